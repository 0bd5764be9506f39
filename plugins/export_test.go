package plugins

import "github.com/hashicorp/go-plugin"

// ServeV1 serves impl under contract version 1 only, as an adapter built
// before version 2 does.
func ServeV1(impl Adapter) {
	serve(impl, map[int]plugin.PluginSet{1: {pluginName: &AdapterPlugin{Impl: impl}}})
}
