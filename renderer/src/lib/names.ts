// VM names are unique regardless of letter case (the backend refuses a duplicate too); the
// dialogs say so while the user types.
import type { VmInfo } from '../../../electron/shared/api.js';

const key = (name: string) => name.trim().toLocaleLowerCase();

/** The sentence saying `name` is taken by another VM (not `exceptId`), or null. */
export function nameTaken(name: string, vms: VmInfo[], exceptId?: string): string | null {
  if (!name.trim()) return null;
  const other = vms.find((v) => v.config.id !== exceptId && key(v.config.name) === key(name));
  return other ? `That name is already used by the VM '${other.config.name}': VM names are unique, whatever their letter case.` : null;
}
