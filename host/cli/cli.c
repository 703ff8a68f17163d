#include "cli/cli.h"

#include <stdio.h>

int luar_cli_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "luar: not implemented yet\n");
    return 2;
}
