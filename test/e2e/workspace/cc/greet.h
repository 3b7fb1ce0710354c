#ifndef ACTIOND_E2E_GREET_H
#define ACTIOND_E2E_GREET_H
const char *greeting(void);
#endif
