/* A module with thread-local storage, loaded many times under different
 * names by tls_dlopen.c. */
__thread char tls_buf[256] = {1};
__thread long tls_counter;

long touch(void) {
    tls_buf[0]++;
    return ++tls_counter + tls_buf[0];
}
