#include <iostream>
int main() {
  long long a, b;
  std::cin >> a >> b;
  int* volatile nowhere = nullptr;
  std::cout << a + b + *nowhere << "\n";  // reads address 0: SIGSEGV
}
