/* kubectl-gpumode: the kubectl plugin (status, plan, retry, pause, resume).
 * The commands land with the plugin's issue; this entry point already
 * builds so `make` produces all three programs. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "version") == 0) {
        printf("kubectl-gpumode %s\n", GM_VERSION);
        return 0;
    }
    fprintf(stderr, "usage: kubectl gpumode status|plan|retry|pause|resume\n"
                    "(not implemented yet in this build)\n");
    return 2;
}
