package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Import sends a CSV or XLSX file to the node to import into channel (see
// ImportOptions). progress, when not nil, is told how far the import is
// as the node reads and publishes. The report lists every problem found;
// with any, nothing was published.
func (c *Client) Import(ctx context.Context, channel string, file io.Reader, o ImportOptions, progress func(ImportProgress)) (*ImportReport, error) {
	q := url.Values{}
	q.Set("kind", o.Kind)
	q.Set("format", o.Format)
	for k, v := range map[string]string{"encoding": o.Encoding, "sheet": o.Sheet, "file": o.File} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.DryRun {
		q.Set("dry_run", "true")
	}
	if len(o.Map) > 0 {
		b, err := json.Marshal(o.Map)
		if err != nil {
			return nil, err
		}
		q.Set("map", string(b))
	}
	path := "/v1/channels/" + url.PathEscape(channel) + "/import?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, file)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	if progress != nil {
		req.Header.Set("Accept", "application/x-ndjson")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, readError(resp, http.MethodPost, path)
	}
	if progress == nil {
		var rep ImportReport
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&rep); err != nil {
			return nil, fmt.Errorf("import: the answer is not a report: %w", err)
		}
		return &rep, nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var line struct {
			Progress *ImportProgress `json:"progress"`
			Report   *ImportReport   `json:"report"`
			Error    *Error          `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, fmt.Errorf("import: bad answer line: %w", err)
		}
		switch {
		case line.Error != nil:
			return line.Report, line.Error
		case line.Report != nil:
			return line.Report, nil
		case line.Progress != nil:
			progress(*line.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return nil, errors.New("import: the daemon ended the answer without a report")
}

// Export writes the records of channel to w in the format o says (see
// ExportOptions).
func (c *Client) Export(ctx context.Context, channel string, o ExportOptions, w io.Writer) error {
	q := url.Values{}
	for k, v := range map[string]string{"format": o.Format, "kind": o.Kind, "since": o.Since, "lang": o.Lang, "encoding": o.Encoding, "id_base": o.IDBase} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.CID != "" {
		q.Set("cid", o.CID)
	}
	if o.WithLinks {
		q.Set("with_links", "true")
	}
	if o.CrossChannel {
		q.Set("cross_channel", "true")
	}
	path := "/v1/channels/" + url.PathEscape(channel) + "/export?" + q.Encode()
	resp, err := c.send(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("export: the answer broke off (%w); the file is incomplete", err)
	}
	return nil
}

// Orders lists the lifecycle of the orders in channel (every channel when
// empty) with status (every status when empty; "open" includes late).
func (c *Client) Orders(ctx context.Context, channel, status string) ([]Order, error) {
	q := url.Values{}
	if channel != "" {
		q.Set("channel", channel)
	}
	if status != "" {
		q.Set("status", status)
	}
	var v []Order
	return v, c.do(ctx, http.MethodGet, "/v1/orders?"+q.Encode(), nil, &v)
}

// Order returns the lifecycle of order docID.
func (c *Client) Order(ctx context.Context, channel, docID string) (*Order, error) {
	q := url.Values{}
	if channel != "" {
		q.Set("channel", channel)
	}
	var v Order
	return &v, c.do(ctx, http.MethodGet, "/v1/orders/"+url.PathEscape(docID)+"?"+q.Encode(), nil, &v)
}

// Trace follows record c's links up (what it was made from) or down (what
// was made from it), depth levels (10 when 0).
func (c *Client) Trace(ctx context.Context, rec string, down bool, depth int) (*TraceNode, error) {
	q := url.Values{}
	if down {
		q.Set("down", "true")
	}
	if depth > 0 {
		q.Set("depth", fmt.Sprint(depth))
	}
	var v TraceNode
	return &v, c.do(ctx, http.MethodGet, "/v1/trace/"+url.PathEscape(rec)+"?"+q.Encode(), nil, &v)
}

// Disclose passes record rec, which the node holds, to channel.
func (c *Client) Disclose(ctx context.Context, d Disclose) (*Published, error) {
	var v Published
	return &v, c.do(ctx, http.MethodPost, "/v1/disclose", d, &v)
}

// PCF adds up the carbon footprint of the lot production report rec
// reports.
func (c *Client) PCF(ctx context.Context, rec string) (*PCF, error) {
	var v PCF
	return &v, c.do(ctx, http.MethodGet, "/v1/pcf/"+url.PathEscape(rec), nil, &v)
}
