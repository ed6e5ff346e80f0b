// Package deploy holds the tests of chapter 7 of the Interlock tutorial
// (docs/tutorial/07-helm.md): the Helm chart in deploy/helm/interlock,
// rendered and linted with this folder's bank-values.yaml, and this
// folder's Dockerfile, which builds the bank of chapter 6. The bank's code
// is chapter 6's, unchanged. It holds tests only.
package deploy
