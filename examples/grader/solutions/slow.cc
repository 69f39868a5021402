#include <iostream>
int main() {
  long long a, b;
  std::cin >> a >> b;
  volatile unsigned long long spins = 0;
  while (true) ++spins;
}
