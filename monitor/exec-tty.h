/* berth-monitor exec-tty: `runc exec --detach --tty` relayed over our own stdio. */
#ifndef BERTH_EXEC_TTY_H
#define BERTH_EXEC_TTY_H
int cmd_exec_tty(int argc, char **argv);
#endif
