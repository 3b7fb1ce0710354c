"""Rules that produce and consume a tree artifact (a declared output directory)."""

def _tree_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run_shell(
        inputs = [ctx.file.src],
        outputs = [out],
        command = """
set -eu
mkdir -p "$1/nested/deeper"
cat "$2" > "$1/copy.txt"
echo 'hello from the tree' > "$1/nested/hello.txt"
printf '%s\\n' 1 2 3 > "$1/nested/deeper/numbers.txt"
printf '#!/bin/sh\\necho tree tool\\n' > "$1/tool.sh"
chmod 0755 "$1/tool.sh"
""",
        arguments = [out.path, ctx.file.src.path],
        mnemonic = "MakeTree",
    )
    return [DefaultInfo(files = depset([out]))]

tree = rule(
    implementation = _tree_impl,
    attrs = {"src": attr.label(allow_single_file = True)},
)

def _tree_manifest_impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name + ".txt")

    # Lists the directory with contents and runs the executable, so the action depends on
    # every file in the tree (and on its executable bit).
    ctx.actions.run_shell(
        inputs = [ctx.file.tree],
        outputs = [out],
        command = """
set -eu
(cd "$1" && find . -type f | LC_ALL=C sort | while read -r f; do echo "== $f"; cat "$f"; done
 ./tool.sh) > "$2"
""",
        arguments = [ctx.file.tree.path, out.path],
        mnemonic = "TreeManifest",
    )
    return [DefaultInfo(files = depset([out]))]

tree_manifest = rule(
    implementation = _tree_manifest_impl,
    attrs = {"tree": attr.label(allow_single_file = True)},
)
