// Entry point of bin/berth. `berth daemon` loads the daemon (fastify, sqlite, engine);
// every other verb loads only the CLI and client, so a CLI call starts fast.
import * as nodeModule from 'node:module';

// Caches compiled code between CLI runs (Node 22.1+).
nodeModule.enableCompileCache?.();

const argv = process.argv;
const verb = argv.slice(2).find((a) => !a.startsWith('-'));

if (verb === 'daemon' && !argv.includes('--help')) {
  const { daemonCommand } = await import('./daemon/main.ts');
  const { Command } = await import('commander');
  const prog = new Command('berth').enablePositionalOptions().addCommand(daemonCommand());
  try {
    await prog.parseAsync(argv);
  } catch (e) {
    process.stderr.write(`berthd: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(125);
  }
} else {
  const { runCli } = await import('./cli/main.ts');
  process.exitCode = await runCli(argv);
}
