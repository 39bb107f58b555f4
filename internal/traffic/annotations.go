package traffic

import "strings"

// Annotations meshroll sets on the routing object to recognise what it put there.
const (
	// MirrorAnnotation marks the mirror meshroll set: its value is the name of the route
	// that carries it. A mirror to the canary without it is the user's, and is never removed.
	MirrorAnnotation = "meshroll.dev/mirror"
	// PrunedAnnotation marks a route whose stable destination a promotion with
	// MESHROLL_PRUNE removed: its value is the route's name. Such a route, the canary alone at
	// 100, is still steered (a rollback appends the stable destination again); any other
	// route without the stable destination is refused.
	PrunedAnnotation = "meshroll.dev/pruned"
)

// AnnotationOps sets annotation key to value on an object whose annotations as read are
// annotations, or, with clear, removes it, pinning the value it removes.
func AnnotationOps(annotations map[string]string, key, value string, clear bool) []PatchOp {
	path := "/metadata/annotations/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
	switch {
	case clear:
		return []PatchOp{{Op: "test", Path: path, Value: value}, {Op: "remove", Path: path}}
	case len(annotations) == 0: // an empty map is not in the object either
		return []PatchOp{{Op: "add", Path: "/metadata/annotations", Value: map[string]any{key: value}}}
	}
	return []PatchOp{{Op: "add", Path: path, Value: value}}
}
