#!/usr/bin/env bash
# Installs sluice as a systemd service: binary, units (sluice.service and the Kafka
# bridge's sluice-bridge.service), sysusers.d and tmpfiles.d entries, docs, the
# environment file examples, and a starter configuration and key ring. Existing
# configuration (/etc/sluice/sluice.toml, keys.toml, sluice.env, sluice-bridge.env) is
# never overwritten; the binary, units and the other shipped files are replaced (site
# changes to a unit belong in a drop-in: `systemctl edit sluice`). Does not enable or
# start either service; the bridge stays disabled until [bridge.kafka] is configured.
#
#   systemd/install.sh [--dry-run] [--prefix DIR] [--root DIR] [--binary FILE] [--no-keys]
#
#   --prefix DIR   /usr/local (default) or /usr (a package): DIR/bin/sluice,
#                  DIR/lib/systemd/system/sluice.service (and sluice-bridge.service),
#                  DIR/lib/sysusers.d/sluice.conf,
#                  DIR/lib/tmpfiles.d/sluice.conf, DIR/share/doc/sluice/ (systemd searches
#                  both lib directories)
#   --root DIR     install into DIR as the file system root (a staging tree or an image);
#                  users and directories are created in DIR with systemd-sysusers/-tmpfiles
#                  --root. Default /.
#   --binary FILE  the sluice binary (default $CARGO_TARGET_DIR/release/sluice, else
#                  target/release/sluice)
#   --no-keys      do not create /etc/sluice/keys.toml when it is missing
#   --dry-run      print what would be done, change nothing
# Needs root for a real install (ownership root:sluice). Needs systemd-sysusers and
# systemd-tmpfiles (systemd >= 252).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
prefix=/usr/local
root=/
binary=${CARGO_TARGET_DIR:-$repo/target}/release/sluice
dry_run=no
make_keys=yes
while (($#)); do
    case $1 in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --binary) binary=${2:?--binary needs a file}; shift 2 ;;
        --no-keys) make_keys=no; shift ;;
        --dry-run) dry_run=yes; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
case $prefix in
    /usr | /usr/local) ;;
    *) echo "install: --prefix /usr or /usr/local: the only places systemd looks for units, sysusers.d and tmpfiles.d" >&2; exit 2 ;;
esac
root=$(realpath -m "$root")
[[ $root == / ]] && R="" || R=$root # R + an absolute path = where it lands
[[ -x $binary ]] || { echo "install: no binary at $binary (cargo build --release, or --binary)" >&2; exit 2; }
for tool in systemd-sysusers systemd-tmpfiles; do
    command -v "$tool" >/dev/null || { echo "install: $tool is needed (systemd >= 252)" >&2; exit 2; }
done
if [[ $dry_run == no && $EUID -ne 0 ]]; then
    echo "install: run as root (the files belong to root:sluice); --dry-run shows what would happen" >&2
    exit 2
fi

bindir=$prefix/bin
unitdir=$prefix/lib/systemd/system
sysusersdir=$prefix/lib/sysusers.d
tmpfilesdir=$prefix/lib/tmpfiles.d
docdir=$prefix/share/doc/sluice
confdir=/etc/sluice

say() { printf '%s\n' "$*"; }
run() { # a command, or its echo under --dry-run
    if [[ $dry_run == yes ]]; then say "             would run: $*"; else "$@"; fi
}
# install_file SRC DEST MODE: copy (atomically) a shipped file, replacing what is there.
install_file() {
    local src=$1 dest=$R$2 mode=$3
    if [[ -f $dest ]] && cmp -s "$src" "$dest"; then say "unchanged    $2"; return; fi
    say "install      $2 ($mode root:root)"
    [[ $dry_run == yes ]] || install -D -m "$mode" -o 0 -g 0 "$src" "$dest"
}
# write_new DEST MODE CONTENT_FILE: create a config file only if none exists.
write_new() {
    local dest=$R$1 mode=$2 src=$3
    if [[ -e $dest ]]; then say "keep         $1 (exists, not overwritten)"; return 1; fi
    say "create       $1 ($mode root:sluice)"
    [[ $dry_run == yes ]] || install -D -m "$mode" -o 0 -g "$sluice_gid" "$src" "$dest"
}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# The units with this prefix's paths.
for unit in sluice.service sluice-bridge.service; do
    sed -e "s#/usr/local/bin/sluice#$bindir/sluice#g" \
        -e "s#file:///usr/share/doc/sluice/#file://$docdir/#g" \
        "$here/$unit" >"$stage/$unit"
done

say "== sluice install: prefix $prefix, root $root$([[ $dry_run == yes ]] && echo ", dry run: nothing is changed")"
install_file "$binary" "$bindir/sluice" 0755
install_file "$stage/sluice.service" "$unitdir/sluice.service" 0644
# The Kafka bridge: installed, never enabled here (it needs [bridge.kafka] first).
install_file "$stage/sluice-bridge.service" "$unitdir/sluice-bridge.service" 0644
install_file "$here/sluice.sysusers" "$sysusersdir/sluice.conf" 0644
install_file "$here/sluice.tmpfiles" "$tmpfilesdir/sluice.conf" 0644
install_file "$repo/README.md" "$docdir/README.md" 0644
install_file "$here/README.md" "$docdir/systemd.md" 0644
install_file "$repo/docs/OPERATIONS.md" "$docdir/OPERATIONS.md" 0644
# Man pages and bash completion, generated by the binary from its own CLI definition.
"$binary" man --out-dir "$stage/man1"
for page in "$stage"/man1/*.1; do
    install_file "$page" "$prefix/share/man/man1/$(basename "$page")" 0644
done
"$binary" completions bash >"$stage/sluice.bash"
install_file "$stage/sluice.bash" "$prefix/share/bash-completion/completions/sluice" 0644

# The user and group, then the directories (tmpfiles needs the user), by bare name as at
# boot: both tools search /etc, /run, /usr/local/lib and /usr/lib (so an override in /etc
# wins), inside DIR with --root, where they also read and write DIR/etc/passwd and friends.
root_args=()
[[ -n $R ]] && root_args=(--root="$root")
if [[ $dry_run == yes ]]; then
    say "users        systemd-sysusers ${root_args[*]} sluice.conf, which would do:"
    # The file is not installed yet: show what it would do from the source copy.
    systemd-sysusers --dry-run "${root_args[@]}" "$here/sluice.sysusers" 2>&1 | sed 's/^/             /'
    say "directories  systemd-tmpfiles --create ${root_args[*]} sluice.conf"
else
    [[ -n $R ]] && mkdir -p "$R/etc" # sysusers locks DIR/etc/passwd
    say "users        systemd-sysusers ${root_args[*]} sluice.conf"
    systemd-sysusers "${root_args[@]}" sluice.conf
    say "directories  systemd-tmpfiles --create ${root_args[*]} sluice.conf"
    systemd-tmpfiles --create "${root_args[@]}" sluice.conf
fi
sluice_gid=$(awk -F: '$1 == "sluice" { print $3 }' "$R/etc/group" 2>/dev/null || true)
if [[ -z $sluice_gid ]]; then
    [[ $dry_run == yes ]] || { echo "install: group sluice missing after systemd-sysusers" >&2; exit 1; }
    sluice_gid=sluice # dry run: not created yet
fi

# The starter configuration: production-ish values, validated below.
cat >"$stage/sluice.toml" <<'EOF'
# /etc/sluice/sluice.toml: written once by systemd/install.sh, never overwritten by it.
# Every key is optional; `sluice check-config --config /etc/sluice/sluice.toml` prints the
# effective values (all keys: README.md "Configuration"). Listeners, shards and storage
# change on restart; the key ring, TLS files and JWKS on `systemctl reload sluice`.

[ingest]
listen = "0.0.0.0:8080"          # every IPv4 address; "[::]:8080" for IPv6
shards = 0                       # one per core, each pinned to its core
drain_timeout_ms = 10000         # SIGTERM: in-flight requests finish within this (the unit allows 30 s)

# TLS on the same reactor (cert and key readable by group sluice: /etc/sluice/tls 0750).
# [ingest.tls]
# listen = "0.0.0.0:8443"
# cert_file = "/etc/sluice/tls/server.pem"
# key_file = "/etc/sluice/tls/server.key"

[storage]
data_dir = "/var/lib/sluice"     # the unit's StateDirectory=, the only writable path
partitions = 64                  # fixed for the life of the data dir
durability = "fsync"             # an ack means on disk, surviving power loss; "os": survives a crash only

[auth]
keys_file = "/etc/sluice/keys.toml"   # root:sluice 0640; `sluice keys rotate` as root, then reload
timestamp_tolerance_secs = 300

[admin]
listen = "127.0.0.1:9090"        # /metrics, /healthz, /readyz, POST /admin/reload: loopback only

# The Kafka bridge (sluice-bridge.service, not enabled by install.sh; `serve` ignores
# this section). Uncomment, then `systemctl enable --now sluice-bridge`. The SASL
# password goes in /etc/sluice/sluice-bridge.env, not here.
# [bridge.kafka]
# brokers = "kafka1:9092,kafka2:9092"
# metrics_listen = "127.0.0.1:9466"   # the bridge's /metrics and /healthz: loopback only
EOF
# (With a throw-away key ring in place of keys.toml, which may not exist yet.)
"$binary" keys gen --keys-file "$stage/keys.toml" >/dev/null
sed "s#\"/etc/sluice/keys.toml\"#\"$stage/keys.toml\"#" "$stage/sluice.toml" >"$stage/check.toml"
"$binary" check-config --config "$stage/check.toml" >/dev/null 2>"$stage/check.err" ||
    { echo "install: the starter configuration does not validate:" >&2; cat "$stage/check.err" >&2; exit 1; }

write_new "$confdir/sluice.toml" 0640 "$stage/sluice.toml" || true
install_file "$here/sluice.env.example" "$confdir/sluice.env.example" 0644
install_file "$here/sluice-bridge.env.example" "$confdir/sluice-bridge.env.example" 0644

# A first key ring, so the service can start; secrets stay in the file (0640 root:sluice).
if [[ $make_keys == yes ]]; then
    if [[ -e $R$confdir/keys.toml ]]; then
        say "keep         $confdir/keys.toml (exists, not overwritten)"
    elif [[ $dry_run == yes ]]; then
        say "create       $confdir/keys.toml (0640 root:sluice: sluice keys gen --partner default)"
    else
        say "create       $confdir/keys.toml (0640 root:sluice, one key for partner \"default\")"
        "$binary" keys gen --keys-file "$R$confdir/keys.toml" --partner default >/dev/null
        chown "0:$sluice_gid" "$R$confdir/keys.toml"
        chmod 0640 "$R$confdir/keys.toml"
    fi
fi

# Loaded by a running systemd only when installing into this system.
if [[ -n $R ]]; then
    say "skip         systemctl daemon-reload (installing into $root)"
elif [[ ! -d /run/systemd/system ]]; then
    say "skip         systemctl daemon-reload (systemd is not running)"
else
    say "reload       systemctl daemon-reload"
    run systemctl daemon-reload
fi

say "== done. Next:"
say "   edit $confdir/sluice.toml (check: sluice check-config --config $confdir/sluice.toml)"
say "   optional: cp $confdir/sluice.env.example $confdir/sluice.env (root:sluice 0640)"
say "   sluice keys list --keys-file $confdir/keys.toml   # the kid to give producers"
say "   systemctl enable --now sluice && systemctl status sluice"
say "   Kafka bridge (installed, disabled): configure [bridge.kafka] in $confdir/sluice.toml, then"
say "     optional: install -m 0600 -o root -g root $confdir/sluice-bridge.env.example $confdir/sluice-bridge.env  # SASL password"
say "     systemctl enable --now sluice-bridge && systemctl status sluice-bridge"
