#!/usr/bin/env bash
# tests/tools/test_manpages.sh — every program's man page against the program.
#
# For each tools/qw-*.c program: bin/ has it; man/man1/PROG.1 exists and has
# the sections NAME, SYNOPSIS, DESCRIPTION, OPTIONS, EXIT STATUS, FILES,
# EXAMPLES, SEE ALSO; the set of --long options that `PROG --help` prints
# equals the set the page's OPTIONS section names; and every runnable
# example runs (exit 0).
#
# Runnable examples: in the EXAMPLES section, a line (in a .nf block or not)
# that starts with "$ " is a shell command; a line ending in a backslash or
# a pipe continues on the next.  The commands of one page run in order, under
# bash -o pipefail, in one fresh directory, so later commands may use the
# files of earlier ones.  When tests/tools/man-fixtures/PROG.sh exists it is
# sourced in that directory first, to create the files the examples name.
# Lines without "$ " (output, pipelines needing a GPU or the network) are not
# run; a page without runnable examples gets a NOTE line, not a failure.  Pages in man5 and man7 must have NAME, DESCRIPTION and SEE ALSO.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 30

# The source lines of section $2 of page $1.
section() {
    awk -v want="$2" '/^\.SH/ { s = $0; sub(/^\.SH[ \t]+/, "", s); gsub(/"/, "", s); on = (s == want); next } on' "$1"
}

# roff escapes to plain text (enough for options and commands).
unroff() {
    sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\&//g' -e "s/\\\\(aq/'/g" -e 's/\\(dq/"/g' \
        -e 's/\\(rs/\\/g' -e 's/\\e/\\/g' -e 's/\\\\/\\/g' -e 's/[[:space:]]*$//'
}

long_opts() { grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u; }

has_sections() {   # has_sections PAGE SECTION...
    local page=$1 s missing=()
    shift
    for s in "$@"; do
        grep -Eq "^\.SH +\"?$s\"?[[:space:]]*$" "$page" || missing+=("$s")
    done
    if [ ${#missing[@]} -eq 0 ]; then pass "$(basename "$page"): sections"
    else fail "$(basename "$page"): sections" "missing: ${missing[*]}"; fi
}

for src in "$QW_SRCDIR"/tools/qw-*.c; do
    [ -e "$src" ] || continue
    prog=$(basename "$src" .c)
    page=$QW_SRCDIR/man/man1/$prog.1
    if ! command -v "$prog" >/dev/null; then fail "$prog: built" "$prog is not in \$QW_BIN"; continue; fi
    if [ ! -f "$page" ]; then fail "$prog: man page" "no man/man1/$prog.1"; continue; fi
    has_sections "$page" NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" FILES EXAMPLES "SEE ALSO"

    help=$("$prog" --help) || fail "$prog: --help" "exit status $?"
    in_help=$(printf '%s\n' "$help" | long_opts)
    in_page=$(section "$page" OPTIONS | unroff | long_opts)
    if [ -n "$in_help" ] && [ "$in_help" = "$in_page" ]; then
        pass "$prog: options match --help"
    else
        fail "$prog: options match --help" "only in --help: $(comm -23 <(echo "$in_help") <(echo "$in_page") | tr '\n' ' ')only in the page: $(comm -13 <(echo "$in_help") <(echo "$in_page") | tr '\n' ' ')"
    fi

    dir=$tmp/examples-$prog
    mkdir -p "$dir"
    fixtures=$QW_SRCDIR/tests/tools/man-fixtures/$prog.sh
    if [ -f "$fixtures" ]; then (cd "$dir" && . "$fixtures") || fail "$prog: example fixtures" "$fixtures failed"; fi
    n=0
    cmd=
    while IFS= read -r line; do
        if [ -z "$cmd" ]; then
            case $line in '$ '*) cmd=${line#\$ } ;; *) continue ;; esac
        else
            cmd+=$'\n'$line
        fi
        case $cmd in *\\ | *'|') continue ;; esac
        n=$((n + 1))
        if (cd "$dir" && timeout 120 bash -o pipefail -c "$cmd") >"$dir/.out" 2>"$dir/.err"; then
            pass "$prog: example $n"
        else
            fail "$prog: example $n" "'$cmd' failed: $(head -c 300 "$dir/.err")"
        fi
        cmd=
    done < <(section "$page" EXAMPLES | unroff)
    if [ "$n" -eq 0 ]; then echo "NOTE $prog: no runnable example (a line starting with '\$ ')"; fi
done

for page in "$QW_SRCDIR"/man/man5/*.5 "$QW_SRCDIR"/man/man7/*.7; do
    [ -e "$page" ] || continue
    has_sections "$page" NAME DESCRIPTION "SEE ALSO"
done
