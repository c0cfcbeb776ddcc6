// `spindle <command> …`: each command lives in electron/cli/<name>.ts and is loaded on demand,
// so `spindle inspect` never pays for loading the VM manager.
import { SpindleError } from '../shared/errors.js';
import { describeParseError, joinNegativeValues } from './args.js';

export interface Command {
  summary: string;
  usage: string;
  /** Returns the process exit code. Throws SpindleError for user-facing failures. */
  run(argv: string[]): Promise<number>;
}

const commands: Record<string, () => Promise<{ default: Command }>> = {
  inspect: () => import('./inspect.js'),
  'create-image': () => import('./create-image.js'),
  import: () => import('./import.js'),
  vm: () => import('./vm.js'),
  'bench-engines': () => import('./bench-engines.js'),
  loadgen: () => import('./loadgen.js'),
  serve: () => import('./serve.js'),
  export: () => import('./export.js'),
  autostart: () => import('./autostart.js'),
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length), 8);
  return ['usage: spindle <command> [options]', '', 'commands:']
    .concat(Object.keys(commands).map((n) => `  ${n.padEnd(width)}  see: spindle ${n} --help`))
    .join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 2;
  }
  const load = commands[name];
  if (!load) {
    console.error(`spindle: unknown command '${name}'\n${help()}`);
    return 2;
  }
  const cmd = (await load()).default;
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`${cmd.summary}\n\nusage: ${cmd.usage}`);
    return 0;
  }
  // `--queues -1`: a value, not an option (args.ts), for the commands that call parseArgs themselves.
  const args = joinNegativeValues(rest);
  try {
    return await cmd.run(args);
  } catch (caught) {
    // node:util parseArgs reports unknown or malformed options with ERR_PARSE_ARGS_*: one line too.
    const err = describeParseError(caught, args, name) ?? caught;
    if (err instanceof SpindleError) {
      console.error(`spindle ${name}: ${err.message}`);
      return err.code === 'INVALID_ARGUMENT' ? 2 : 1;
    }
    throw err;
  }
}
