#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for Spindle: system packages, npm packages, build.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential python3 pkg-config libaio-dev liburing-dev   # the native addon
  qemu-system-x86 qemu-utils                                   # QEMU and qemu-storage-daemon
  ovmf swtpm swtpm-tools                                       # UEFI (and Secure Boot) firmware, the TPM 2.0 emulator
  grub-pc-bin grub-efi-amd64-bin xorriso mtools                # grub-mkrescue: the ISOs the machine tests boot
  linux-image-amd64 busybox-static cpio kmod                   # the test guest
  e2fsprogs xfsprogs util-linux fio                            # filesystems, loop devices, the fio peer
  chromium                                                     # UI tests in headless Chromium
  clang-format                                                 # formatting native/ (.clang-format)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Electron binary cannot always be downloaded; electron is an optional dependency and its
# failed download does not fail the install (npm start falls back to serve mode).
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run build
