#!/usr/bin/env bash
# bootstrap.sh USER@HOST[:PORT] ENV [options]
#
# Provisions a server with brine, and reprovisions it on every later run: checks the local tree,
# connects over SSH with the host key pinned in pillar/known_hosts, makes sure the server has rsync
# and Node.js >= 18.19, syncs the agent bundle, states/ and the pillar of ENV (never another
# environment's), installs /usr/local/bin/agent and runs `agent apply`. Its exit code is the
# agent's (0 converged, 2 a state failed), or: 1 usage, 3 invalid local input (nothing sent),
# 5 SSH or host-key problem (nothing sent), 6 the server cannot be prepared, 7 the server is
# another environment's (nothing sent; --switch-environment to make it this one's).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: ./bootstrap.sh USER@HOST[:PORT] ENV [options]

  USER@HOST[:PORT]   the server; USER is root or has passwordless sudo (e.g. deploy@host)
  ENV                an environment: a folder of pillar/ (staging, production…)

options:
  -i, --identity FILE     the SSH private key to log in with (default: ssh's own choice)
  --known-hosts FILE      where host keys are pinned (default: pillar/known_hosts)
  --test                  sync, then run `agent apply --test`: show what would change
  --switch-environment    the server was bootstrapped for another environment: make it ENV's
                          (the old environment's pillar and secrets are removed from it)
  --grain KEY=VALUE       a custom grain of this server (VALUE is YAML: roles=[web, db]);
                          repeat for more. Written to /etc/brine/grains, replacing what was
                          there; without --grain the server keeps its own
  -h, --help

The first connection to a host records its key in the known-hosts file (trust on first use;
commit the file). A key that changed later stops everything before anything is sent.
EOF
}

say() { printf 'bootstrap: %s\n' "$*"; }
fail() { local code=$1; shift; printf 'bootstrap: error: %s\n' "$*" >&2; exit "$code"; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target="" env="" identity="" known_hosts="$repo/pillar/known_hosts" apply_args=(apply) switch_env=false grains=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -i|--identity) [ $# -ge 2 ] || fail 1 "$1 needs a file"; identity=$2; shift 2 ;;
    --known-hosts) [ $# -ge 2 ] || fail 1 "$1 needs a file"; known_hosts=$2; shift 2 ;;
    --test) apply_args=(apply --test); shift ;;
    --switch-environment) switch_env=true; shift ;;
    --grain)
      [ $# -ge 2 ] || fail 1 "$1 needs KEY=VALUE"
      [[ "$2" =~ ^[A-Za-z_][A-Za-z0-9_]*=.+$ ]] || fail 1 "--grain expects KEY=VALUE (a name, then YAML: roles=[web, db]), got \"$2\""
      grains+=("$2"); shift 2 ;;
    -*) usage >&2; fail 1 "unknown option $1" ;;
    *)
      if [ -z "$target" ]; then target=$1
      elif [ -z "$env" ]; then env=$1
      else usage >&2; fail 1 "unexpected argument $1"; fi
      shift ;;
  esac
done
[ -n "$target" ] && [ -n "$env" ] || { usage >&2; exit 1; }

# USER@HOST[:PORT]
[[ "$target" == *@* ]] || fail 1 "the server must be given as USER@HOST[:PORT], got \"$target\""
user=${target%%@*}
hostport=${target#*@}
host=${hostport%%:*}
port=22
[[ "$hostport" == *:* ]] && port=${hostport##*:}
[[ "$port" =~ ^[0-9]+$ ]] || fail 1 "the port must be a number, got \"$port\""
[[ "$user" =~ ^[a-z_][a-z0-9_.-]*$ ]] || fail 1 "\"$user\" is not a user name"
[ -n "$host" ] || fail 1 "no host in \"$target\""

# ssh's -o options and rsync's -e split on whitespace: a path with a space would silently pin the
# host key somewhere else. Refuse it instead.
for path in "$repo" "$known_hosts" "$identity" "${TMPDIR:-/tmp}"; do
  [[ "$path" =~ [[:space:]] ]] && fail 1 "paths with spaces are not supported here: \"$path\" (move the repository, or pass --known-hosts / -i elsewhere)"
done

# --- 1. The local tree, before anything touches the server -------------------------------------
[[ "$env" =~ ^[a-z0-9][a-z0-9_-]*$ ]] || fail 3 "invalid environment name \"$env\""
if [ ! -d "$repo/pillar/$env" ]; then
  known=$(cd "$repo/pillar" && find . -mindepth 1 -maxdepth 1 -type d -printf '%f ' | sed 's/ $//')
  fail 3 "unknown environment \"$env\": there is no pillar/$env/ (known: ${known:-none})"
fi
if [ -z "$(find "$repo/pillar/$env" -maxdepth 1 -name 'secrets*.yaml' ! -name '*.example.yaml' -print -quit)" ]; then
  fail 3 "pillar/$env/secrets.yaml is missing: copy pillar/$env/secrets.example.yaml to pillar/$env/secrets.yaml and fill in real values (it is never committed)"
fi
command -v node >/dev/null || fail 3 "Node.js is needed here to check the states before sending them"
command -v rsync >/dev/null || fail 3 "rsync is needed here (apt-get install rsync)"

bundle=$repo/dist/agent.mjs
if [ -d "$repo/agent" ] && { [ ! -f "$bundle" ] || [ -n "$(find "$repo/agent" -newer "$bundle" -name '*.ts' -print -quit)" ]; }; then
  say "building the agent bundle"
  ( cd "$repo" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run --silent build ) >&2
fi
[ -f "$bundle" ] || fail 3 "no agent bundle at dist/agent.mjs (npm run build)"

# Exactly what the server will hold: states/, the top-level pillar files and pillar/ENV/.
stage=$(mktemp -d "${TMPDIR:-/tmp}/brine-bootstrap.XXXXXX")
# ssh's control socket needs a short path (a unix socket's is at most 107 bytes; macOS's TMPDIR
# alone is about 50): a directory of its own in /tmp, and %C (a hash) for the name.
ctl=$(mktemp -d /tmp/brine-ssh.XXXXXX)
trap 'rm -rf "$stage" "$ctl"' EXIT
mkdir -p "$stage/srv/pillar"
cp -a "$repo/states" "$stage/srv/states"
find "$repo/pillar" -mindepth 1 -maxdepth 1 -type f -name '*.yaml' ! -name '*.example.yaml' -exec cp -a {} "$stage/srv/pillar/" \;
cp -a "$repo/pillar/$env" "$stage/srv/pillar/$env"
find "$stage/srv/pillar/$env" -name '*.example.yaml' -delete
printf '%s\n' "$env" > "$stage/srv/environment"
# Custom grains: the tree is validated with them, as the server will read them.
validate_env=()
if [ ${#grains[@]} -gt 0 ]; then
  { printf '# custom grains of this server, written by bootstrap.sh --grain\n'; for g in "${grains[@]}"; do printf '%s: %s\n' "${g%%=*}" "${g#*=}"; done; } > "$stage/grains"
  validate_env=(BRINE_GRAINS="$stage/grains")
fi

if ! env "${validate_env[@]}" node "$bundle" validate --root "$stage/srv" --env "$env" > "$stage/validate.out" 2>&1; then
  cat "$stage/validate.out" >&2
  fail 3 "the states or pillar for $env are invalid; nothing was sent to $host"
fi
say "$(cat "$stage/validate.out")"

# --- 2. SSH, with the host key pinned -------------------------------------------------------------
mkdir -p "$(dirname "$known_hosts")"
touch "$known_hosts"
ssh_opts=(-p "$port" -o "UserKnownHostsFile=$known_hosts" -o StrictHostKeyChecking=accept-new
  -o GlobalKnownHostsFile=/dev/null -o HashKnownHosts=no -o BatchMode=yes -o ConnectTimeout=15 -o LogLevel=ERROR
  -o ControlMaster=auto -o "ControlPath=$ctl/%C" -o ControlPersist=120)
[ -n "$identity" ] && ssh_opts+=(-i "$identity" -o IdentitiesOnly=yes)
key_name=$host
[ "$port" != 22 ] && key_name="[$host]:$port"

first_use=false
ssh-keygen -F "$key_name" -f "$known_hosts" >/dev/null 2>&1 || first_use=true
if ! out=$(ssh "${ssh_opts[@]}" "$user@$host" true 2>&1); then
  if grep -qiE 'host identification has changed|host key verification failed|key for .* has changed' <<<"$out"; then
    printf '%s\n' "$out" >&2
    fail 5 "the host key of $key_name is not the one pinned in ${known_hosts#$repo/}: the server was reinstalled, or someone is in the middle. Nothing was sent. If the change is expected, remove its line (ssh-keygen -R '$key_name' -f ${known_hosts#$repo/}) and run again."
  fi
  printf '%s\n' "$out" >&2
  if grep -qiE 'ControlPath .*too long|too long for Unix domain socket' <<<"$out"; then
    fail 5 "ssh's control socket path is too long ($ctl): set TMPDIR to a shorter directory"
  fi
  fail 5 "cannot log in to $user@$key_name over SSH"
fi
if $first_use; then
  fp=$(ssh-keygen -l -F "$key_name" -f "$known_hosts" 2>/dev/null | awk '/^[^#]/ {print $2, $3; exit}')
  say "first connection to $key_name: trusted its host key on first use and pinned it in ${known_hosts#$repo/}"
  say "  ${fp:-(fingerprint unknown)} — compare it with the server's console if you can, and commit the file"
fi

# Root runs commands as they are; anyone else through passwordless sudo.
sudo=()
rsync_path=rsync
if [ "$user" != root ]; then
  sudo=(sudo -n)
  rsync_path="sudo -n rsync"
fi
remote() { ssh "${ssh_opts[@]}" "$user@$host" "${sudo[@]}" "$@"; }

# A server of another environment is not silently made this one's: its secrets would be replaced.
current_env=$(remote cat /srv/brine/environment 2>/dev/null | tr -d '[:space:]' || true)
if [ -n "$current_env" ] && [ "$current_env" != "$env" ]; then
  if ! $switch_env; then
    fail 7 "$host is a $current_env server (/srv/brine/environment); bootstrapping it as $env is refused and nothing was sent. To make it a $env server, run again with --switch-environment: $current_env's pillar and secrets are removed from it, and what the states made from them (the app's .env, the database role's password, the deploy key…) is rewritten with $env's values; anything only $current_env's states made stays and is yours to check."
  fi
  say "switching $host from $current_env to $env: $current_env's pillar and secrets are removed from /srv/brine, and the states rewrite what was made from them with $env's values (anything only $current_env's states made stays)"
fi

# --- 3. Prepare the host: rsync and Node.js >= 18.19 from the distro --------------------------------
prepare=$(cat <<'SH'
set -eu
node_ok() { command -v node >/dev/null 2>&1 && node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>18||(a===18&&b>=19)?0:1)'; }
need=""
command -v rsync >/dev/null 2>&1 || need="$need rsync"
command -v node >/dev/null 2>&1 || need="$need nodejs"
if [ -n "$need" ]; then
  echo "installing:$need"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
if ! node_ok; then
  v=$(node --version 2>/dev/null || echo none)
  . /etc/os-release 2>/dev/null || true
  echo "BRINE_NODE_TOO_OLD $v ${PRETTY_NAME:-this system}" >&2
  exit 10
fi
mkdir -p /opt/brine
# The new tree is synced beside the live one and swapped in under the agent's lock, so a scheduled
# run never reads half-synced states and pillar. Seeded from the live tree: rsync sends only changes.
rm -rf /srv/brine.next
if [ -d /srv/brine ]; then cp -a /srv/brine /srv/brine.next; else mkdir -p /srv/brine.next; fi
chmod 0700 /srv/brine.next
SH
)
if ! prep_out=$(remote sh -s <<<"$prepare" 2>&1); then
  if grep -q BRINE_NODE_TOO_OLD <<<"$prep_out"; then
    read -r _ v os < <(grep BRINE_NODE_TOO_OLD <<<"$prep_out")
    fail 6 "$os ships Node.js $v; brine needs >= 18.19 (Debian 12, Ubuntu 24.04). Install a newer nodejs package on the server (e.g. from the distro's backports) and run again."
  fi
  if grep -qi 'sudo' <<<"$prep_out" && [ "$user" != root ]; then
    fail 6 "$user needs passwordless sudo on $host: $prep_out"
  fi
  printf '%s\n' "$prep_out" >&2
  fail 6 "could not prepare $host"
fi
[ -n "$prep_out" ] && say "$host: $prep_out"

# --- 4. Sync: the bundle, states, and this environment's pillar only --------------------------------
rsync_opts=(-a --checksum --delete --no-owner --no-group --chmod=D0700,F0600 -e "ssh ${ssh_opts[*]}" --rsync-path="$rsync_path")
rsync "${rsync_opts[@]}" --itemize-changes "$stage/srv/" "$user@$host:/srv/brine.next/" > "$stage/rsync.out"
rsync -a --no-owner --no-group --chmod=F0644 -e "ssh ${ssh_opts[*]}" --rsync-path="$rsync_path" "$bundle" "$user@$host:/opt/brine/agent.mjs"
synced=$(grep -c '^[<>c*]' "$stage/rsync.out" || true)
say "synced to $host:/srv/brine ($synced files changed) for environment $env"
remote sh -s <<'SH'
set -eu
node=$(command -v node)
printf '#!/bin/sh\nexec %s /opt/brine/agent.mjs "$@"\n' "$node" > /usr/local/bin/agent.tmp
chmod 0755 /usr/local/bin/agent.tmp
mv /usr/local/bin/agent.tmp /usr/local/bin/agent
SH
if [ -f "$stage/grains" ]; then
  remote sh -c "'umask 022; mkdir -p /etc/brine && cat > /etc/brine/grains.tmp && mv /etc/brine/grains.tmp /etc/brine/grains'" < "$stage/grains"
  say "custom grains written to $host:/etc/brine/grains (${grains[*]})"
fi
remote /usr/local/bin/agent __swap-tree /srv/brine.next

# --- 5. Converge ------------------------------------------------------------------------------------
say "agent ${apply_args[*]} on $host"
tty=()
[ -t 1 ] && tty=(-t)
set +e
ssh "${tty[@]}" "${ssh_opts[@]}" "$user@$host" "${sudo[@]}" env BRINE_STARTED_BY=bootstrap /usr/local/bin/agent "${apply_args[@]}"
code=$?
set -e
ssh "${ssh_opts[@]}" -O exit "$user@$host" 2>/dev/null || true
exit $code
