#!/usr/bin/env bash
# Builds the Debian 12 test-server image once and caches it as a tarball.
# Every test server is a fresh copy of this tarball, booted with systemd-nspawn.
# Usage: build-image.sh [TARBALL]   (default: $BRINE_IMAGE or /var/cache/brine/bookworm.tar)
set -euo pipefail
out=${1:-${BRINE_IMAGE:-/var/cache/brine/bookworm.tar}}
[ -s "$out" ] && { echo "image: $out (cached)"; exit 0; }
command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container >/dev/null
}
mirror=${BRINE_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /var/tmp/brine-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
# nodejs is the distro's Node 18: the agent bundle must run on exactly what a real server has.
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,openssh-server,iproute2,nodejs,cron,sudo,procps,ca-certificates,rsync \
  bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
root=$work/root
# A server of its own: no host name clash, root may log in with a test key, no apt recommends.
echo brine-test > "$root/etc/hostname"
printf 'APT::Install-Recommends "false";\n' > "$root/etc/apt/apt.conf.d/90brine-norecommends"
sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/' "$root/etc/ssh/sshd_config"
rm -f "$root"/etc/ssh/ssh_host_*_key*   # each server makes its own host keys at first boot
chroot "$root" systemctl enable ssh >/dev/null 2>&1 || true
# Host keys are generated per boot by a oneshot unit (debootstrap's are removed above).
cat > "$root/etc/systemd/system/brine-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable brine-hostkeys.service >/dev/null 2>&1
chroot "$root" apt-get clean
mkdir -p "$(dirname "$out")"
tar -C "$root" -cf "$out.tmp" . && mv "$out.tmp" "$out"
echo "image: $out ($(du -h "$out" | cut -f1))"
