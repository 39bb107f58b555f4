// Package cluster is what every traffic backend does in the cluster around its routing object
// (a VirtualService, an HTTPRoute), whatever its kind: the retry loop of a guarded write
// (Write), the Events that say what changed and why (RecordChange, Note), retried reads
// (Retried), and the preflight's checks of what the route reaches: the Deployments that must
// be Available with pods the route selects (WaitDeployments), the Services that select them
// (ServiceSelector), and the permissions the run needs (Forbidden). The backends keep what
// is about their own kind: reading it, planning a change, the patch that makes it.
package cluster
