// App-wide facts: the connection, the backend's app.info, and which page is shown.
import { api, ApiCallError, type ConnectionState } from '../api.js';
import type { AppInfo } from '../../../../electron/api/contract.js';

export type View = { page: 'vm'; vmId: string } | { page: 'scratch' } | { page: 'compare'; vmId?: string; diskId?: string } | { page: 'welcome' };

class AppState {
  connection = $state<ConnectionState>('connecting');
  info = $state<AppInfo | null>(null);
  infoError = $state<string | null>(null);
  view = $state<View>({ page: 'welcome' });

  constructor() {
    api.onState((s) => {
      this.connection = s;
      if (s === 'open') void this.loadInfo();
    });
  }

  async loadInfo(): Promise<void> {
    try {
      this.info = await api.call('app.info', {});
      this.infoError = null;
    } catch (err) {
      this.infoError = sentence(err);
    }
  }
}

/** Any failure as the sentence to show. */
export function sentence(err: unknown): string {
  if (err instanceof ApiCallError) return err.message;
  return 'Something went wrong in the window itself; reload it to continue.';
}

export const app = new AppState();
