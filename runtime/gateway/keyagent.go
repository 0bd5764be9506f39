package gateway

import "github.com/armoriq/controlplane/runtime/store"

// setKeyAgent records the agent identity of a new agent key.
func setKeyAgent(k *store.APIKey, agent string) {
	_ = agent // store.APIKey gains an Agent field with issue 9
}
