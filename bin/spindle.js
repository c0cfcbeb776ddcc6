#!/usr/bin/env node
// The `spindle` command: the compiled CLI lives in dist/.
import('../dist/electron/cli/main.js')
  .then((cli) => cli.main(process.argv.slice(2)))
  .then((code) => {
    process.exitCode = code;
  })
  .catch((err) => {
    if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/electron/cli/main.js')) {
      console.error('spindle: not built yet; run `npm run build` first');
    } else {
      console.error(`spindle: ${err?.message ?? err}`);
    }
    process.exitCode = 1;
  });
