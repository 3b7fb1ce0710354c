#include "cc/greet.h"

const char *greeting(void) { return "hello from c"; }
