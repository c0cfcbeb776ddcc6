// App-wide facts: the connection, the backend's app.info, and which page is shown (kept in the
// URL's hash: lib/route.ts).
import { api, ApiCallError, type ConnectionState } from '../api.js';
import type { AppInfo } from '../../../../electron/shared/api.js';
import { formatHash, parseHash, type View } from '../route.js';

export type { View, VmTab } from '../route.js';

class AppState {
  connection = $state<ConnectionState>('connecting');
  info = $state<AppInfo | null>(null);
  infoError = $state<string | null>(null);
  #view = $state<View>(typeof location === 'undefined' ? { page: 'welcome' } : parseHash(location.hash));

  constructor() {
    api.onState((s) => {
      this.connection = s;
      if (s === 'open') void this.loadInfo();
    });
    if (typeof window !== 'undefined') {
      // Back, Forward, or a hash typed by hand.
      window.addEventListener('hashchange', () => {
        if (formatHash(this.#view) !== location.hash) this.#view = parseHash(location.hash);
      });
    }
  }

  get view(): View {
    return this.#view;
  }

  /** Shows another page; each one is a browser history entry. */
  set view(v: View) {
    this.#view = v;
    if (typeof location !== 'undefined' && location.hash !== formatHash(v)) location.hash = formatHash(v);
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
