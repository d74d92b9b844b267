#!/bin/sh
# The throwaway root of `cargo xtask deb --install-test`. Run as PID 1 of private mount,
# network and PID namespaces (unshare --mount --net --pid --fork --propagation private), so
# every mount and process below ends with this one, and the filter the checks attach to lo
# is attached to this namespace's lo alone:
#   fresh_root.sh SCRATCH DEB CHECKS VERSION
# SCRATCH gets a tmpfs holding an overlay whose lower layer is the host's / and whose upper
# layer takes every write; CHECKS runs chrooted in it against DEB. The host's files are only
# ever read.
set -eu

scratch=$1 deb=$2 checks=$3 version=$4

mount -t tmpfs -o mode=0755 sni-filter-deb-test "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/root"
root=$scratch/root

mount --rbind /dev "$root/dev"
# This PID namespace's processes only.
mount -t proc proc "$root/proc"
# Not recursive: the host's bpffs (pins of a running filter) and cgroups stay out of reach of
# the maintainer scripts; a bpffs of its own takes the pins of the filter the checks run.
mount --bind /sys "$root/sys"
mount -t bpf bpf "$root/sys/fs/bpf"
ip link set lo up
# A /run of its own: no systemd runs here, and the host's /run/sni-filter stays out.
mount -t tmpfs -o mode=0755 run "$root/run"
mkdir -p "$root/run/lock"
mount -t tmpfs -o mode=1777 tmp "$root/tmp"

cp "$deb" "$root/tmp/package.deb"
cp "$checks" "$root/tmp/package_checks.sh"
exec chroot "$root" /bin/sh -eu /tmp/package_checks.sh /tmp/package.deb "$version"
