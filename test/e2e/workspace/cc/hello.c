#include <stdio.h>
#include "cc/greet.h"

int main(void) {
  printf("%s\n", greeting());
  return 0;
}
