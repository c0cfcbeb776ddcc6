// Real ISO images for the machine tests, made with Debian's tools: a data ISO (xorriso) holding one
// marker file, and a bootable one (grub-mkrescue: BIOS and UEFI GRUB, with the test guest's kernel
// and initramfs) whose GRUB menu boots the guest with a command line the test can recognise.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** An ISO 9660 image (volume label `label`) holding marker.txt with `marker` in it. */
export function makeDataIso(dir: string, name: string, label: string, marker: string): string {
  const root = join(dir, `${name}.d`);
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'marker.txt'), `${marker}\n`);
  const out = join(dir, `${name}.iso`);
  execFileSync('xorriso', ['-as', 'mkisofs', '-quiet', '-V', label, '-o', out, root], { stdio: 'pipe' });
  return out;
}

/** A GRUB rescue ISO (grub-mkrescue, needs grub-pc-bin, grub-efi-amd64-bin, xorriso, mtools) that boots `kernel` + `initrd` with `cmdline` at once. */
export function makeBootIso(dir: string, kernel: string, initrd: string, cmdline: string): string {
  const root = join(dir, 'bootiso.d');
  mkdirSync(join(root, 'boot', 'grub'), { recursive: true });
  copyFileSync(kernel, join(root, 'boot', 'vmlinuz'));
  copyFileSync(initrd, join(root, 'boot', 'initrd.gz'));
  writeFileSync(
    join(root, 'boot', 'grub', 'grub.cfg'),
    `set timeout=0\nset default=0\nmenuentry "spindle test guest" {\n  linux /boot/vmlinuz ${cmdline}\n  initrd /boot/initrd.gz\n}\n`,
  );
  const out = join(dir, 'boot.iso');
  execFileSync('grub-mkrescue', ['-o', out, root], { stdio: 'pipe' });
  return out;
}
