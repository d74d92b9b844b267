#!/bin/sh
# What `cargo xtask deb --install-test` checks, run chrooted in the throwaway root that
# fresh_root.sh builds (a copy-on-write of the host; no systemd runs as PID 1):
#   package_checks.sh DEB VERSION
# Install, the files, the binary, the configuration, the unit, completions and man pages,
# a reinstall (the upgrade path), removal keeping an edited conffile, then purge leaving
# nothing. Any failed check stops with "FAIL: what".
set -eu

deb=$1 version=$2
config=/etc/sni-filter/filter.toml

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
step() {
    echo "-- $*"
}

step "not installed before"
if dpkg-query -W sni-filter >/dev/null 2>&1; then
    fail "sni-filter is already known to dpkg in the fresh root"
fi

step "dpkg -i (a fresh install)"
out=$(dpkg -i "$deb" 2>&1) || fail "dpkg -i failed: $out"
echo "$out"
echo "$out" | grep -q "set the LAN interfaces in $config" ||
    fail "a fresh install did not say how to set up the service"
status=$(dpkg-query -W -f='${Status} ${Version}' sni-filter)
[ "$status" = "install ok installed $version" ] || fail "dpkg status is: $status"

step "the files"
for file in /usr/sbin/sni-filter $config /etc/sni-filter/lists/tiktok.txt \
    /etc/sni-filter/lists/bytedance.txt /lib/systemd/system/sni-filter.service \
    /lib/systemd/system/sni-filter-update-lists.service \
    /lib/systemd/system/sni-filter-update-lists.timer \
    /usr/share/bash-completion/completions/sni-filter \
    /usr/share/zsh/vendor-completions/_sni-filter \
    /usr/share/fish/vendor_completions.d/sni-filter.fish \
    /usr/share/man/man8/sni-filter.8.gz /usr/share/man/man8/sni-filter-run.8.gz \
    /usr/share/man/man8/sni-filter-check-config.8.gz \
    /usr/share/doc/sni-filter/README.md /usr/share/doc/sni-filter/copyright \
    /usr/share/doc/sni-filter/changelog.gz; do
    [ -f "$file" ] || fail "$file was not installed"
done
[ -x /usr/sbin/sni-filter ] || fail "/usr/sbin/sni-filter is not executable"
conffiles=$(dpkg-query -W -f='${Conffiles}' sni-filter)
for file in $config /etc/sni-filter/lists/tiktok.txt /etc/sni-filter/lists/bytedance.txt; do
    echo "$conffiles" | grep -q " $file " || fail "$file is not a conffile: $conffiles"
done
# Every file the package holds, for the check after purge.
dpkg -L sni-filter >/tmp/package-paths

step "sni-filter --version"
said=$(sni-filter --version)
echo "$said"
case "$said" in
"sni-filter $version (commit "?*")") ;;
*) fail "--version said: $said" ;;
esac

step "check-config of the shipped configuration: refused (exit 78), it names no interface"
rc=0
said=$(sni-filter check-config $config 2>&1) || rc=$?
[ "$rc" = 78 ] || fail "check-config of the shipped configuration exited $rc, not 78: $said"
echo "$said" | grep -q "interfaces is empty" || fail "check-config did not say why: $said"

step "check-config with interfaces = [\"lo\"]"
# Beside the shipped file, since its lists are read relative to it; purge must remove it.
sed 's/^interfaces = \[\]$/interfaces = ["lo"]/' $config >/etc/sni-filter/filter-lo.toml
grep -qx 'interfaces = \["lo"\]' /etc/sni-filter/filter-lo.toml ||
    fail "the shipped configuration has no 'interfaces = []' line to set"
said=$(sni-filter check-config /etc/sni-filter/filter-lo.toml) ||
    fail "check-config refused a configuration with an interface"
echo "$said"
echo "$said" | grep -q "interfaces: lo" || fail "check-config did not read the interface"

step "systemd-analyze verify"
said=$(systemd-analyze verify /lib/systemd/system/sni-filter.service 2>&1) ||
    fail "systemd-analyze verify failed: $said"
[ -z "$said" ] || fail "systemd-analyze verify warned: $said"
grep -q '^ExecStart=/usr/sbin/sni-filter run ' /lib/systemd/system/sni-filter.service ||
    fail "the unit does not start /usr/sbin/sni-filter"

step "completions and man pages"
said=$(bash -c '. /usr/share/bash-completion/completions/sni-filter && complete -p sni-filter' 2>&1) ||
    fail "the bash completion does not load: $said"
echo "$said"
if command -v zsh >/dev/null; then zsh -n /usr/share/zsh/vendor-completions/_sni-filter; fi
if command -v fish >/dev/null; then fish -n /usr/share/fish/vendor_completions.d/sni-filter.fish; fi
for page in /usr/share/man/man8/sni-filter*.8.gz; do
    zcat "$page" | grep -q '^\.SH NAME$' || fail "$page has no NAME section"
done
if command -v man >/dev/null; then
    said=$(MANWIDTH=80 man -l /usr/share/man/man8/sni-filter.8.gz 2>/dev/null)
    echo "$said" | grep -q '^NAME' || fail "man -l shows no NAME: $said"
    echo "$said" | grep -q 'sni-filter-check-config(8)' || fail "man -l lists no check-config"
fi

step "enabled as an administrator would, offline"
systemctl enable sni-filter.service 2>&1
[ -L /etc/systemd/system/multi-user.target.wants/sni-filter.service ] ||
    fail "systemctl enable made no link"

step "dpkg -i again (the upgrade path: postinst configure with the old version)"
out=$(dpkg -i "$deb" 2>&1) || fail "reinstalling failed: $out"
echo "$out"
if echo "$out" | grep -q "set the LAN interfaces"; then
    fail "an upgrade printed the first-install advice"
fi

step "a daemon filtering lo, as the service would run it"
sni-filter run --config /etc/sni-filter/filter-lo.toml --xdp-mode generic >/tmp/daemon.log 2>&1 &
daemon=$!
tries=0
# The pinned link: the filter is on lo.
until [ -e /sys/fs/bpf/sni-filter/link-lo ]; do
    tries=$((tries + 1))
    [ $tries -lt 100 ] || fail "the daemon did not come up: $(cat /tmp/daemon.log)"
    kill -0 $daemon 2>/dev/null || fail "the daemon died: $(cat /tmp/daemon.log)"
    sleep 0.1
done
ip link show lo | grep -q xdp || fail "no XDP program on lo: $(ip link show lo)"
sni-filter status | grep -q lo || fail "status does not show lo: $(sni-filter status 2>&1)"

step "dpkg --remove stops the daemon, takes the filter off and keeps an edited configuration"
echo "# edited by the administrator" >>$config
dpkg --remove sni-filter
if kill -0 $daemon 2>/dev/null; then fail "the daemon still runs after remove"; fi
wait $daemon || true
if ip link show lo | grep -q xdp; then fail "remove left the filter on lo: $(ip link show lo)"; fi
[ ! -e /sys/fs/bpf/sni-filter ] || fail "remove left pins: $(ls /sys/fs/bpf/sni-filter)"
status=$(dpkg-query -W -f='${Status}' sni-filter)
[ "$status" = "deinstall ok config-files" ] || fail "after remove, dpkg status is: $status"
[ ! -e /usr/sbin/sni-filter ] || fail "remove left /usr/sbin/sni-filter"
grep -q "edited by the administrator" $config || fail "remove lost the edited $config"

step "dpkg --purge leaves nothing"
dpkg --purge sni-filter
if dpkg-query -W sni-filter >/dev/null 2>&1; then
    fail "dpkg still lists sni-filter: $(dpkg-query -W -f='${Status}' sni-filter)"
fi
if grep -qx "Package: sni-filter" /var/lib/dpkg/status; then
    fail "/var/lib/dpkg/status still holds sni-filter"
fi
left=$(ls /var/lib/dpkg/info/sni-filter.* 2>/dev/null || true)
[ -z "$left" ] || fail "dpkg's records remain: $left"
while read -r path; do
    # Folders other packages share (/usr/sbin, /usr/share/man/man8...) stay; files must go.
    if [ -e "$path" ] && ! [ -d "$path" ]; then fail "$path remains after purge"; fi
done </tmp/package-paths
for dir in /etc/sni-filter /usr/share/doc/sni-filter; do
    [ ! -e "$dir" ] || fail "$dir remains after purge"
done
[ ! -e /etc/systemd/system/multi-user.target.wants/sni-filter.service ] ||
    fail "purge left the unit's enablement link"
echo "-- all package checks passed"
