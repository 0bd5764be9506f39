// Package schema defines armoriq.yaml: the CUE schema (embedded), the typed
// Config, and the loader that turns YAML or HCL files into a Config with
// positioned diagnostics.
package schema
