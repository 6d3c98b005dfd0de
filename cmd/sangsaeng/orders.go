package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
)

// cmdOrders lists the orders' lifecycles.
func cmdOrders(ctx context.Context, env *Env, args []string) error {
	f := env.flags("orders [--channel C] [--status open|late|done|rejected|cancelled]",
		"List the orders in the node's channels (발주 현황), each as far as it got: the latest\n"+
			"version, the seller's response, what shipped, was received and inspected, line by\n"+
			"line, derived from the records. Late: a line still open past its promised (else\n"+
			"requested) date. --status open includes late orders.")
	channel := f.String("channel", "", "only orders of `CHANNEL`")
	status := f.String("status", "", "only orders with `STATUS`: open, late, done, rejected, cancelled")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	orders, err := c.Orders(ctx, *channel, *status)
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(orders)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tV\tSTATUS\tISSUED\tBUYER → SELLER\tLINES\tOPEN LINES\tLATE")
	for _, o := range orders {
		open, late := 0, 0
		for _, l := range o.Lines {
			if l.Open != "0" {
				open++
			}
			if l.Late {
				late++
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s → %s\t%d\t%d\t%d\n", o.DocID, o.Version, o.Status, dateOf(o.IssuedAt), o.Buyer, o.Seller, len(o.Lines), open, late)
	}
	return tw.Flush()
}

// cmdOrder shows one order's lifecycle, line by line.
func cmdOrder(ctx context.Context, env *Env, args []string) error {
	f := env.flags("order DOC-ID [--channel C]",
		"Show one order's lifecycle line by line: ordered, confirmed, shipped (each\n"+
			"shipment), received, accepted and rejected, open, requested and promised dates,\n"+
			"late, and the inspections of the lots shipped.")
	channel := f.String("channel", "", "the order's `CHANNEL`, when its number is in several")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 1, 1); err != nil {
		return err
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	o, err := c.Order(ctx, *channel, pos[0])
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(o)
	}
	resp := o.Response
	if resp == "" {
		resp = "none yet"
	}
	fmt.Fprintf(env.Stdout, "order %s version %d: %s (response: %s)\n%s → %s, issued %s, record %s\n\n",
		o.DocID, o.Version, o.Status, resp, o.Buyer, o.Seller, dateOf(o.IssuedAt), o.CID)
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tPART\tORDERED\tCONFIRMED\tSHIPPED\tRECEIVED\tACCEPTED\tREJECTED\tOPEN\tDUE\tLATE")
	for _, l := range o.Lines {
		due := l.Promised
		if due == "" {
			due = l.Requested
		}
		late := ""
		if l.Late {
			late = "LATE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.LineID, l.Part, l.Ordered, l.Unit, dash(l.Confirmed),
			l.Shipped, l.Received, l.Accepted, l.Rejected, l.Open, dash(due), late)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range o.Lines {
		for _, s := range l.Shipments {
			fmt.Fprintf(env.Stdout, "line %s: shipped %s on %s (%s%s)\n", l.LineID, s.Quantity, dateOf(s.DespatchedAt), s.DocID, lotList(s.Lots))
		}
		for _, i := range l.Inspections {
			fmt.Fprintf(env.Stdout, "line %s: lot %s inspected: %s (%s)\n", l.LineID, i.Lot, i.Result, i.DocID)
		}
	}
	return nil
}

func dateOf(t string) string {
	if len(t) >= 10 {
		return t[:10]
	}
	return dash(t)
}

func lotList(lots []string) string {
	if len(lots) == 0 {
		return ""
	}
	return ", lots " + strings.Join(lots, ", ")
}
