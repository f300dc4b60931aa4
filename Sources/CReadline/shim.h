// readline's headers need stdio's FILE declared first.
#include <stdio.h>
#include <readline/readline.h>
#include <readline/history.h>
