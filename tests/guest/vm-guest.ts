// The test guest for VMs run by the VM manager: the project's one guest image (tests/lib/
// guest-image.ts: Debian's kernel, busybox, virtio/ext4 modules, fio, e2fsprogs) with its command
// agent moved to ttyS0, the VM's only serial port, which the manager exposes as its console.
// GuestAgent speaks the agent's protocol over the manager's serial stream.
import { randomBytes } from 'node:crypto';
import type { VmManager } from '../../electron/host/vm/manager.js';
import { AGENT_END_PREFIX, AGENT_READY, buildGuestImage } from '../lib/guest-image.js';

/** Kernel log kept off the shared port (loglevel=1: only emergencies) so it does not mix with command output. */
// no_timer_check: see tests/lib/qemu.ts (a slow TCG boot must not fail the IO-APIC timer check).
export const GUEST_CMDLINE = 'console=ttyS0 quiet loglevel=1 panic=-1 spindle.agent=ttyS0 no_timer_check';

export async function guestBoot(): Promise<{ kind: 'kernel'; kernel: string; initrd: string; cmdline: string }> {
  const image = await buildGuestImage();
  return { kind: 'kernel', kernel: image.kernel, initrd: image.initrd, cmdline: GUEST_CMDLINE };
}

export interface RunResult {
  code: number;
  output: string;
}

/** Collects one VM's serial output and runs commands through the guest's agent. */
export class GuestAgent {
  text = '';
  private readonly off: () => void;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly manager: VmManager,
    private readonly vmId: string,
  ) {
    const fn = (e: { vmId: string; data: Buffer }): void => {
      if (e.vmId === vmId) this.text += e.data.toString('latin1');
    };
    manager.on('serial', fn);
    this.off = () => manager.off('serial', fn);
  }

  /** Where the output ends now: pass to ready() to wait for the agent of the next boot. */
  mark(): number {
    return this.text.length;
  }

  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.text.slice(from).match(re);
      if (m) return Object.assign(m, { index: (m.index ?? 0) + from });
      if (Date.now() > deadline) throw new Error(`serial: ${re} not seen within ${timeoutMs} ms; last output:\n${this.text.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits for the agent's ready line (a TCG boot on a busy 2-core machine can take minutes). */
  async ready(from = 0, timeoutMs = 240_000): Promise<void> {
    await this.waitFor(new RegExp(AGENT_READY), timeoutMs, from);
  }

  /** Sends a command and does not wait (for one that ends the guest, like poweroff). */
  fire(cmd: string): void {
    this.manager.serialInput(this.vmId, Buffer.from(`${randomBytes(6).toString('hex')} ${Buffer.from(cmd).toString('base64')}\n`));
  }

  /** Runs `cmd` with /bin/sh in the guest (one at a time); stdout and stderr interleaved. */
  run(cmd: string, timeoutMs = 120_000): Promise<RunResult> {
    const next = this.queue.then(async () => {
      const token = randomBytes(6).toString('hex');
      const from = this.text.length;
      this.manager.serialInput(this.vmId, Buffer.from(`${token} ${Buffer.from(cmd).toString('base64')}\n`));
      const m = await this.waitFor(new RegExp(`\\r?\\n${AGENT_END_PREFIX}${token}_(\\d+)__\\r?\\n`), timeoutMs, from);
      return { code: Number(m[1]), output: this.text.slice(from, m.index).replace(/\r/g, '') };
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  async runOk(cmd: string, timeoutMs?: number): Promise<string> {
    const r = await this.run(cmd, timeoutMs);
    if (r.code !== 0) throw new Error(`guest command failed (${r.code}): ${cmd}\n${r.output}`);
    return r.output;
  }

  close(): void {
    this.off();
  }
}

/** The guest device whose virtio-blk serial is `serial` (/sys/block/vdX/serial), e.g. '/dev/vdb'. */
export async function guestDevOf(g: GuestAgent, serial: string): Promise<string> {
  const out = await g.runOk(
    `for i in $(seq 1 100); do for d in /sys/block/vd*; do [ "$(cat $d/serial 2>/dev/null)" = "${serial}" ] && { echo \${d##*/}; exit 0; }; done; sleep 0.2; done; exit 1`,
  );
  return `/dev/${out.trim()}`;
}

/** Polls `/sys/block/<dev>/size` (512-byte sectors) in the guest until it is `sectors`; throws
 *  with the last value seen after `timeoutMs`. */
export async function waitGuestSectors(g: GuestAgent, dev: string, sectors: number, timeoutMs = 60_000): Promise<void> {
  const name = dev.replace('/dev/', '');
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = (await g.runOk(`cat /sys/block/${name}/size`)).trim();
    if (Number(last) === sectors) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the guest's /sys/block/${name}/size stayed ${last}, waited ${timeoutMs} ms for ${sectors}`);
}
