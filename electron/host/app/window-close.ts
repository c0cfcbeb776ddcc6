// What closing the window does. With VMs running the app stays (window hidden, tray icon shows
// the VMs): the VMs, their disks and the local API socket the CLI uses keep going. With none
// running, closing the window quits as a desktop app does. Pure, tested in Node; main.ts asks.
import type { VmInfo } from '../../shared/api.js';
import { isLive } from './tray-model.js';

export type CloseDecision = 'hide' | 'quit';

/** `quitting`: a quit is in progress (Quit from the tray or menu), so the window really closes. */
export function onWindowClose(vms: readonly VmInfo[], quitting: boolean): CloseDecision {
  if (quitting) return 'quit';
  return vms.some((v) => isLive(v.state)) ? 'hide' : 'quit';
}

/** The Quit question's text, or null when no VM runs (quit at once). */
export function quitQuestion(vms: readonly VmInfo[]): { message: string; detail: string } | null {
  const running = vms.filter((v) => isLive(v.state));
  if (!running.length) return null;
  return {
    message: `${running.length === 1 ? `The VM '${running[0]!.config.name}' is` : `${running.length} VMs are`} running.`,
    detail:
      'Quitting shuts them down (ACPI, then forced off after a timeout) and drains their disks. Their guests lose anything not yet saved.',
  };
}
