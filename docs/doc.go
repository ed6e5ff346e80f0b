// Package docs holds Interlock's user documentation: getting started, the
// tutorial (each chapter's code in a folder beside it), the concepts, the
// deployment guide and the reference. It has no Go API; its tests keep the
// documentation true to the code:
//
//   - every ```go block of a Markdown file, here and in the README, either
//     compiles as a whole file or is marked <!-- code: path --> and appears,
//     line for line, in that file;
//   - every `interlock` command and flag, and every scripts/*.sh command,
//     that a shell block runs exists;
//   - every relative link leads to a file;
//   - the generated parts of reference/configuration.md (settings, commands,
//     builder options, Helm values) are what the code says today
//     (go test ./docs -update rewrites them);
//   - every exported name of the public packages has a doc comment, and
//     every INTERLOCK_* variable the code reads is in the reference.
package docs
