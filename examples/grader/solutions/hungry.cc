#include <iostream>
#include <vector>
int main() {
  long long a, b;
  std::cin >> a >> b;
  std::vector<char> big(std::size_t{1} << 30, 1);  // 1 GiB, written
  std::cout << a + b + big.back() - 1 << "\n";
}
