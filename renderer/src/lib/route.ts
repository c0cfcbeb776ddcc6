// Where the user is, in the URL's hash (#/vm/<id>/<tab>, #/compare, #/scratch), so a reload or a
// reopened tab lands on the same page and the browser's Back goes where it was. The query string
// stays the serve-mode token's.
export type VmTab = 'overview' | 'disks' | 'live' | 'console' | 'snapshots' | 'settings';
export const VM_TABS: VmTab[] = ['overview', 'disks', 'live', 'console', 'snapshots', 'settings'];

export type View =
  | { page: 'vm'; vmId: string; tab: VmTab }
  | { page: 'scratch' }
  | { page: 'compare'; vmId?: string; diskId?: string }
  | { page: 'welcome' };

const seg = (s: string | undefined) => (s ? decodeURIComponent(s) : undefined);

export function parseHash(hash: string): View {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (parts[0] === 'vm' && parts[1]) {
    const tab = VM_TABS.includes(parts[2] as VmTab) ? (parts[2] as VmTab) : 'overview';
    return { page: 'vm', vmId: seg(parts[1])!, tab };
  }
  if (parts[0] === 'compare') {
    const vmId = seg(parts[1]);
    const diskId = seg(parts[2]);
    return vmId && diskId ? { page: 'compare', vmId, diskId } : { page: 'compare' };
  }
  if (parts[0] === 'scratch') return { page: 'scratch' };
  return { page: 'welcome' };
}

export function formatHash(v: View): string {
  switch (v.page) {
    case 'vm':
      return `#/vm/${encodeURIComponent(v.vmId)}/${v.tab}`;
    case 'compare':
      return v.vmId && v.diskId ? `#/compare/${encodeURIComponent(v.vmId)}/${encodeURIComponent(v.diskId)}` : '#/compare';
    case 'scratch':
      return '#/scratch';
    default:
      return '#/';
  }
}
