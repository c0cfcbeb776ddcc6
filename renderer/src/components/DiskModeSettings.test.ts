// The disk-settings rules as a user meets them (modes.ts behind the UI).
import { describe, expect, it, vi } from 'vitest';
import { render, screen, fireEvent } from '@testing-library/svelte';
import DiskModeSettings from './DiskModeSettings.svelte';

const base = { nowait: 'auto' as const, readOnly: false, queues: 1, onchange: () => {} };

function option(select: HTMLElement, value: string): HTMLOptionElement {
  const o = [...(select as HTMLSelectElement).options].find((x) => x.value === value);
  if (!o) throw new Error(`no option ${value}`);
  return o;
}

describe('DiskModeSettings', () => {
  it('disables native under cache writeback and says why inline', () => {
    render(DiskModeSettings, { ...base, kind: 'file', aio: 'threads', cache: 'writeback' });
    const aio = screen.getByLabelText('Aio');
    expect(option(aio, 'native').disabled).toBe(true);
    expect(option(aio, 'threads').disabled).toBe(false);
    expect(option(aio, 'io_uring').disabled).toBe(false);
    const reason = screen.getByTestId('native-reason');
    expect(reason.textContent).toMatch(/native' needs cache 'none' or 'directsync'/);
    expect(reason.textContent).toMatch(/cache 'writeback' goes through the host page cache/);
    expect(aio.getAttribute('aria-describedby')).toBe(reason.id);
  });

  it.each(['none', 'directsync'] as const)('offers native under cache %s with no reason shown', (cache) => {
    render(DiskModeSettings, { ...base, kind: 'file', aio: 'threads', cache });
    expect(option(screen.getByLabelText('Aio'), 'native').disabled).toBe(false);
    expect(screen.queryByTestId('native-reason')).toBeNull();
  });

  it('with native chosen, disables the buffered cache modes', () => {
    render(DiskModeSettings, { ...base, kind: 'block', aio: 'native', cache: 'none' });
    const cache = screen.getByLabelText('Cache');
    for (const c of ['writeback', 'writethrough', 'unsafe']) expect(option(cache, c).disabled).toBe(true);
    for (const c of ['none', 'directsync']) expect(option(cache, c).disabled).toBe(false);
  });

  it('marks native + none as recommended for host devices', () => {
    render(DiskModeSettings, { ...base, kind: 'block', aio: 'native', cache: 'none' });
    expect(option(screen.getByLabelText('Aio'), 'native').textContent).toMatch(/recommended for host devices/);
    expect(option(screen.getByLabelText('Cache'), 'none').textContent).toMatch(/recommended for host devices/);
    expect(option(screen.getByLabelText('Aio'), 'threads').textContent).not.toMatch(/recommended/);
    expect(screen.getByTestId('default-badge').textContent).toBe('recommended for host devices');
  });

  it('marks threads + writeback as the default for image files, and drops the badge off-default', async () => {
    const { rerender } = render(DiskModeSettings, { ...base, kind: 'file', aio: 'threads', cache: 'writeback' });
    expect(screen.getByTestId('default-badge').textContent).toBe('default for image files');
    await rerender({ ...base, kind: 'file', aio: 'io_uring', cache: 'writeback' });
    expect(screen.queryByTestId('default-badge')).toBeNull();
  });

  it('warns about data loss under cache unsafe, and only then', async () => {
    const { rerender } = render(DiskModeSettings, { ...base, kind: 'file', aio: 'threads', cache: 'unsafe' });
    expect(screen.getByTestId('unsafe-warning').textContent).toMatch(/data .* can be lost/);
    await rerender({ ...base, kind: 'file', aio: 'threads', cache: 'writeback' });
    expect(screen.queryByTestId('unsafe-warning')).toBeNull();
  });

  it('reports each change as a patch', async () => {
    const onchange = vi.fn();
    render(DiskModeSettings, { ...base, kind: 'file', aio: 'threads', cache: 'writeback', onchange });
    await fireEvent.change(screen.getByLabelText('Cache'), { target: { value: 'none' } });
    expect(onchange).toHaveBeenLastCalledWith({ cache: 'none' });
    await fireEvent.change(screen.getByLabelText('Aio'), { target: { value: 'io_uring' } });
    expect(onchange).toHaveBeenLastCalledWith({ aio: 'io_uring' });
  });

  it('nowait is only settable with native', () => {
    render(DiskModeSettings, { ...base, kind: 'file', aio: 'threads', cache: 'none' });
    expect((screen.getByLabelText('Nowait') as HTMLSelectElement).disabled).toBe(true);
  });

  it('on a running VM, read-only and queues are locked and modes say they apply live', () => {
    render(DiskModeSettings, { ...base, kind: 'file', aio: 'threads', cache: 'none', running: true });
    expect((screen.getByLabelText('Read-only') as HTMLInputElement).disabled).toBe(true);
    expect((screen.getByLabelText('Queues') as HTMLInputElement).disabled).toBe(true);
    expect((screen.getByLabelText('Aio') as HTMLSelectElement).disabled).toBe(false);
    expect(screen.getByText(/applies live/)).toBeTruthy();
  });

  it("shows the backend's refusal as a sentence", () => {
    render(DiskModeSettings, {
      ...base,
      kind: 'file',
      aio: 'threads',
      cache: 'none',
      error: 'The disk could not be reopened: permission denied.',
    });
    expect(screen.getByTestId('mode-error').textContent).toBe('The disk could not be reopened: permission denied.');
  });

  it('rejects an out-of-range queue count without reporting it', async () => {
    const onchange = vi.fn();
    render(DiskModeSettings, { ...base, kind: 'file', aio: 'threads', cache: 'none', onchange });
    const q = screen.getByLabelText('Queues') as HTMLInputElement;
    await fireEvent.change(q, { target: { value: '99' } });
    expect(onchange).not.toHaveBeenCalled();
    expect(q.value).toBe('1');
    await fireEvent.change(q, { target: { value: '4' } });
    expect(onchange).toHaveBeenLastCalledWith({ queues: 4 });
  });
});
