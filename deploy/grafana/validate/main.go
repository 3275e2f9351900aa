// Command validate checks Grafana dashboard JSON files against Grafana's own dashboard schema,
// as the Grafana Foundation SDK (github.com/grafana/grafana-foundation-sdk, generated from
// Grafana's schemas) encodes it: a strict decoding that refuses a missing required field, a
// field of the wrong type or a field the schema does not know, in the dashboard, its panels,
// each panel type's options and field config and each Prometheus query; then the SDK's own
// validation of the decoded dashboard.
//
// Usage: validate FILE... ; prints one line per problem, "FILE: problem", and exits 1 if any.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func validate(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var decoded dashboard.Dashboard
	if err := problems(decoded.UnmarshalJSONStrict(raw)); err != nil {
		return err
	}
	return problems(decoded.Validate())
}

// problems is err, or nil when err is an empty list of build errors (the SDK's strict decoding
// returns its list, empty or not, as an error).
func problems(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: validate FILE...")
		os.Exit(2)
	}
	// The panel types (options, field config) and datasource queries the schema knows.
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		if err := validate(path); err != nil {
			failed = true
			fmt.Printf("%s: %v\n", path, err)
			continue
		}
		fmt.Printf("%s: ok\n", path)
	}
	if failed {
		os.Exit(1)
	}
}
