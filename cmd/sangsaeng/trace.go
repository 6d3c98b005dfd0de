package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// cmdTrace follows a record's links.
func cmdTrace(ctx context.Context, env *Env, args []string) error {
	f := env.flags("trace CID [--up|--down] [--depth N] [--json|--dot] | trace CID --pcf",
		"Follow a record's links across every channel the node holds (추적): --up (the\n"+
			"default) shows what it was made from and refers to (lots consumed, their\n"+
			"production and inspection reports, the shipments they came in, the orders they\n"+
			"fulfil), --down what was made from it. A tree for people; --json for tools, --dot\n"+
			"for Graphviz (`sangsaeng trace CID --dot | dot -Tsvg > trace.svg`).\n"+
			"--pcf adds up the carbon footprint of the lot a production report reports: its own\n"+
			"carbon-footprint record (linked describes) plus, for each lot it consumed, the\n"+
			"consumed quantity times that lot's footprint, held or disclosed, each share with\n"+
			"its signer.")
	up := f.Bool("up", false, "what the record was made from (the default)")
	down := f.Bool("down", false, "what was made from the record")
	depth := f.Int("depth", 10, "follow links `N` levels deep (1 to 100)")
	dot := f.Bool("dot", false, "print the trace as a Graphviz dot graph")
	pcf := f.Bool("pcf", false, "add up the lot's carbon footprint from its records")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 1, 1); err != nil {
		return err
	}
	if *up && *down {
		return f.usageErrorf("--up and --down go one way each: give one")
	}
	if *depth < 1 || *depth > 100 {
		return f.usageErrorf("--depth %d: want 1 to 100", *depth)
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	if *pcf {
		p, err := c.PCF(ctx, pos[0])
		if err != nil {
			return err
		}
		if env.JSON {
			return env.printJSON(p)
		}
		return printPCF(env, p)
	}
	tr, err := c.Trace(ctx, pos[0], *down, *depth)
	if err != nil {
		return err
	}
	switch {
	case env.JSON:
		return env.printJSON(tr)
	case *dot:
		return writeDot(env.Stdout, tr, *down)
	}
	fmt.Fprintln(env.Stdout, traceLabel(*tr))
	printTree(env.Stdout, tr.Next, "")
	return nil
}

func traceLabel(t api.TraceNode) string {
	if t.Missing {
		return fmt.Sprintf("%s (not held here)", t.CID)
	}
	var b strings.Builder
	b.WriteString(t.Kind)
	if t.DocID != "" {
		b.WriteString(" " + t.DocID)
	}
	if t.Lot != "" {
		b.WriteString(" lot " + t.Lot)
	}
	fmt.Fprintf(&b, " (%s, %s) %s", t.Author, dateOf(t.Time), t.CID)
	if t.Disclosed {
		b.WriteString(" [disclosed, signature checked]")
	}
	if t.Seen {
		b.WriteString(" (above)")
	}
	return b.String()
}

func printTree(w io.Writer, nodes []api.TraceNode, indent string) {
	for i, n := range nodes {
		branch, more := "├─ ", "│  "
		if i == len(nodes)-1 {
			branch, more = "└─ ", "   "
		}
		fmt.Fprintf(w, "%s%s%s %s\n", indent, branch, n.Rel, traceLabel(n))
		printTree(w, n.Next, indent+more)
	}
}

func writeDot(w io.Writer, t *api.TraceNode, down bool) error {
	fmt.Fprintln(w, "digraph trace {")
	fmt.Fprintln(w, "  rankdir=LR; node [shape=box, fontname=\"Noto Sans CJK KR\"];")
	seen := map[string]bool{}
	var walk func(n api.TraceNode)
	walk = func(n api.TraceNode) {
		if !seen[n.CID] {
			seen[n.CID] = true
			// %q writes a newline as \n, which Graphviz breaks the line at.
			label := n.Kind
			if n.DocID != "" {
				label += "\n" + n.DocID
			}
			if n.Lot != "" {
				label += "\nlot " + n.Lot
			}
			if n.Missing {
				label = "not held\n" + n.CID[:min(16, len(n.CID))] + "…"
			}
			fmt.Fprintf(w, "  %q [label=%q];\n", n.CID, label)
		}
		for _, c := range n.Next {
			from, to := n.CID, c.CID
			if down {
				from, to = c.CID, n.CID
			}
			fmt.Fprintf(w, "  %q -> %q [label=%q];\n", from, to, c.Rel)
			walk(c)
		}
	}
	walk(*t)
	_, err := fmt.Fprintln(w, "}")
	return err
}

func printPCF(env *Env, p *api.PCF) error {
	fmt.Fprintf(env.Stdout, "lot %s of %s: %s %s, %s kgCO2e, %s kgCO2e per %s\n", p.Lot, p.Part, p.Quantity, p.Unit, p.Total, dash(p.PerUnit), p.Unit)
	row := func(what string, s api.PCFShare) {
		how := ""
		if s.Disclosed {
			how = ", disclosed"
		}
		fmt.Fprintf(env.Stdout, "  %-24s %s %s × %s kgCO2e = %s kgCO2e  signed by %s%s (%s)\n", what, s.Quantity, s.Unit, s.PerUnit, s.Share, s.Signer, how, s.Footprint)
	}
	if p.Own != nil {
		row("own process", *p.Own)
	}
	for _, s := range p.Inputs {
		row("lot "+s.Lot, s)
	}
	for _, pr := range p.Problems {
		fmt.Fprintf(env.Stdout, "  incomplete: %s\n", pr)
	}
	if !p.Complete {
		return &exitError{code: 1, msg: "the footprint is incomplete"}
	}
	return nil
}
