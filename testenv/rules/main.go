// rulecheck validates the alerting rules of a PrometheusRule manifest the way Prometheus loads
// them (rulefmt: known fields only, PromQL that parses, valid durations, label and annotation
// templates that parse) and prints, as JSON, every rule with the series selectors of its
// expression (metric name and label matchers), so a test can check each against what our
// processes export.
//
// Usage: rulecheck MANIFEST.yaml
// Exit 0 and JSON on stdout when every rule is valid; exit 1 and one error per line otherwise.
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

type manifest struct {
	APIVersion string    `yaml:"apiVersion"`
	Kind       string    `yaml:"kind"`
	Spec       yaml.Node `yaml:"spec"`
}

type matcher struct {
	Label string `json:"label"`
	Op    string `json:"op"`
	Value string `json:"value"`
}

type selector struct {
	Metric   string    `json:"metric"`
	Matchers []matcher `json:"matchers"`
}

type rule struct {
	Group     string     `json:"group"`
	Alert     string     `json:"alert"`
	Expr      string     `json:"expr"`
	For       string     `json:"for"`
	Selectors []selector `json:"selectors"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: rulecheck MANIFEST.yaml")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m manifest
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if m.APIVersion != "monitoring.coreos.com/v1" || m.Kind != "PrometheusRule" {
		return fmt.Errorf("%s: %s %s is not a monitoring.coreos.com/v1 PrometheusRule", path, m.APIVersion, m.Kind)
	}
	spec, err := yaml.Marshal(&m.Spec)
	if err != nil {
		return err
	}
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.Parse(spec, false, model.UTF8Validation, p, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if len(errs) > 0 {
		msg := ""
		for _, e := range errs {
			msg += fmt.Sprintf("%s: %v\n", path, e)
		}
		return fmt.Errorf("%s", msg)
	}
	var out []rule
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, r.Alert, err)
			}
			var selectors []selector
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				vs, ok := node.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				sel := selector{Metric: vs.Name, Matchers: []matcher{}}
				for _, m := range vs.LabelMatchers {
					if m.Name == "__name__" {
						continue
					}
					sel.Matchers = append(sel.Matchers, matcher{Label: m.Name, Op: m.Type.String(), Value: m.Value})
				}
				sort.Slice(sel.Matchers, func(i, j int) bool { return sel.Matchers[i].Label < sel.Matchers[j].Label })
				selectors = append(selectors, sel)
				return nil
			})
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			out = append(out, rule{Group: g.Name, Alert: name, Expr: r.Expr, For: r.For.String(), Selectors: selectors})
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
