// A VM on an existing host bridge: QEMU's -netdev bridge runs qemu-bridge-helper (setuid root in
// Debian's qemu-system-common), which refuses any bridge its ACL file does not allow
// (QEMU docs: qemu-bridge-helper, /etc/qemu/bridge.conf: "allow br0", "allow all", "deny …",
// "include FILE"). Checked before the start so the refusal is a sentence, not QEMU's stderr.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';

export const BRIDGE_CONF = '/etc/qemu/bridge.conf';

/** Whether the helper's ACL (`conf` and the files it includes) allows `bridge`: as qemu-bridge-helper decides, a matching deny refuses whatever allows it; null when no rule or no file. */
function aclAllows(conf: string, bridge: string, depth = 0): boolean | null {
  if (depth > 8 || !existsSync(conf)) return null;
  let verdict: boolean | null = null;
  for (const raw of readFileSync(conf, 'utf8').split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const [cmd, arg] = line.split(/\s+/);
    if (!cmd || !arg) continue;
    if (cmd === 'include') {
      const inc = aclAllows(isAbsolute(arg) ? arg : join(dirname(conf), arg), bridge, depth + 1);
      if (inc !== null) verdict = inc;
    } else if ((cmd === 'allow' || cmd === 'deny') && (arg === 'all' || arg === bridge)) {
      // qemu-bridge-helper: any matching deny refuses, whatever allows it.
      if (cmd === 'deny') return false;
      verdict = true;
    }
  }
  return verdict;
}

/** Why VM networking cannot join host bridge `bridge`, as a sentence, or null. */
export function bridgeRefusal(bridge: string, opts: { conf?: string; sysClassNet?: string } = {}): string | null {
  const conf = opts.conf ?? BRIDGE_CONF;
  const sys = opts.sysClassNet ?? '/sys/class/net';
  if (!existsSync(join(sys, bridge)))
    return `There is no network interface '${bridge}' on this host; create the bridge first (for example with NetworkManager or systemd-networkd).`;
  if (!existsSync(join(sys, bridge, 'bridge'))) return `The host interface '${bridge}' is not a bridge.`;
  const allowed = aclAllows(conf, bridge);
  if (allowed !== true)
    return `qemu-bridge-helper does not allow the bridge '${bridge}': ${existsSync(conf) ? `${conf} has no 'allow ${bridge}' line (or denies it)` : `${conf} does not exist`}. As root, add the line 'allow ${bridge}' to ${conf}.`;
  return null;
}

/** A sentence for QEMU's stderr when the bridge helper refused, or null. */
export function explainBridgeFailure(stderr: string[], bridge: string): string | null {
  const text = stderr.join('\n');
  if (/access denied by acl file|failed to parse default acl file/i.test(text))
    return `qemu-bridge-helper refused the bridge '${bridge}': allow it in ${BRIDGE_CONF} ('allow ${bridge}').`;
  if (/bridge helper failed|failed to launch bridge helper/i.test(text))
    return `qemu-bridge-helper could not attach the VM to '${bridge}' (it must be installed setuid root, as Debian's qemu-system-common does).`;
  return null;
}
