// The API's application shapes: what Spindle found on the host (AppInfo) and the login autostart
// entry. Pure; re-exported by api.ts.
import { z } from 'zod';
import { Accelerator } from './model.js';

// ───────────────────────────── app info ─────────────────────────────

export const AppInfo = z.object({
  version: z.string(),
  accelerator: Accelerator,
  /** Set when Spindle will use TCG (no usable /dev/kvm): shown as a visible warning. */
  acceleratorWarning: z.string().optional(),
  qemu: z.object({ found: z.boolean(), path: z.string().optional(), version: z.string().optional(), message: z.string().optional() }),
  uefiAvailable: z.boolean(),
  /** Debian's OVMF secure-boot build is installed (Secure Boot can be chosen). */
  secureBootAvailable: z.boolean().optional(),
  /** swtpm is installed (a VM can have a TPM). */
  tpmAvailable: z.boolean().optional(),
  configDir: z.string(),
  /** Where images Spindle makes (the scratch disk) live. */
  dataDir: z.string().optional(),
});
export type AppInfo = z.infer<typeof AppInfo>;

export const LoginAutostart = z.object({ enabled: z.boolean(), path: z.string(), command: z.string().optional() });
export type LoginAutostart = z.infer<typeof LoginAutostart>;
