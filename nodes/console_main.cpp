// spiderhub console: placeholder until the inspector lands.
#include <iostream>
#include <string>

int console_main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "Usage: spiderhub console [--broker HOST:PORT] [COMMAND]\n\n"
                   "Inspects a running broker through its inspector actor.\n"
                   "Not yet available in this build.\n";
      return 0;
    }
  }
  std::cerr << "spiderhub console: not yet available in this build\n";
  return 1;
}
