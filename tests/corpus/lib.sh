# Helpers for the one-shot tools of tests/tests/corpus.rs: the state a tool works on, and
# checks of what it leaves (owners, modes, attributes), not of its exit status.
fail() { echo "CHECK FAIL: $*" >&2; exit 1; }
# expect_stat PATH uid:gid:mode (octal, 4 digits)
expect_stat() {
  got=$(stat -c '%u:%g:%04a' "$1" 2>/dev/null) || fail "$1 missing"
  [ "$got" = "$2" ] || fail "$1 is $got, want $2"
}
expect_xattr() { # PATH NAME VALUE
  got=$(getfattr --only-values -n "$2" "$1" 2>/dev/null) || fail "$1 lacks xattr $2"
  [ "$got" = "$3" ] || fail "$1 xattr $2 = '$got', want '$3'"
}
# make_tree DIR: owners, modes (set-gid included), a symlink, user.* and trusted.* attributes.
make_tree() {
  d=$1; mkdir -p "$d/sub"
  echo one > "$d/f1"; echo secret > "$d/secret"; echo g > "$d/sub/g"
  ln -s f1 "$d/link"
  setfattr -n user.u -v uval "$d/f1"; setfattr -n trusted.t -v tval "$d/f1"
  chown 1234:2345 "$d" "$d/f1" "$d/sub"; chown 1234:1234 "$d/secret" "$d/sub/g"
  chown -h 1235:1235 "$d/link"
  chmod 2775 "$d"; chmod 2755 "$d/f1"; chmod 0600 "$d/secret"; chmod 0700 "$d/sub"; chmod 0640 "$d/sub/g"
}
# check_tree DIR [noxattr]: what make_tree made, kept.
check_tree() {
  d=$1
  [ -n "$SKIP_TOP" ] || expect_stat "$d" 1234:2345:2775
  expect_stat "$d/f1" 1234:2345:2755
  expect_stat "$d/secret" 1234:1234:0600
  expect_stat "$d/sub" 1234:2345:0700
  expect_stat "$d/sub/g" 1234:1234:0640
  [ "$(stat -c %u:%g "$d/link" 2>/dev/null)" = 1235:1235 ] || fail "$d/link owner"
  [ "$(readlink "$d/link")" = f1 ] || fail "link target"
  [ "$(cat "$d/secret" 2>/dev/null)" = secret ] || fail "secret content"
  [ "$(cat "$d/sub/g" 2>/dev/null)" = g ] || fail "sub/g content"
  if [ "$2" != noxattr ]; then
    expect_xattr "$d/f1" user.u uval
    expect_xattr "$d/f1" trusted.t tval
  fi
}
