package api

import (
	"encoding/json"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// DefaultAddr is where the daemon serves the API unless configured otherwise.
const DefaultAddr = "127.0.0.1:4802"

// Files in a node's home directory that clients read.
const (
	// TokenFile holds the bearer token that authenticates API calls.
	TokenFile = "api.token"
	// AddrFile holds the address the running daemon serves the API on; it is
	// written at start and removed at a clean stop.
	AddrFile = "api.addr"
)

// ID is the node's identity: `sangsaeng id`.
type ID struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
	// Reachability says how partners reach the node.
	Reachability Reachability `json:"reachability"`
}

// Reachability says how partners reach a node.
type Reachability struct {
	// State is "public" (AutoNAT confirmed an address partners can dial
	// from the internet), "relayed" (not confirmed public, and reachable
	// through relays), "private" (its addresses were tried from outside
	// and none answered, and no relay slot) or "unknown" (not tried yet,
	// or no partner can test it).
	State string `json:"state"`
	// Public are the addresses AutoNAT confirmed.
	Public []string `json:"public"`
	// Relays are the relays the node uses, named by its config or by the
	// invite codes it joined with.
	Relays []RelayRef `json:"relays"`
	// RelayAddrs are the node's addresses through the relays it holds a
	// slot at.
	RelayAddrs []string `json:"relayAddrs"`
	// RelayService is whether this node relays for its partners.
	RelayService bool `json:"relayService"`
}

// RelayRef is one relay a node uses.
type RelayRef struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Source is "config" (relay.use) or "invite".
	Source    string `json:"source"`
	Connected bool   `json:"connected"`
	// Reserved is whether the node holds a slot there, until Expires.
	Reserved bool   `json:"reserved"`
	Expires  string `json:"expires,omitempty"`
	// Error is why the last attempt to get a slot failed.
	Error string `json:"error,omitempty"`
}

// Peer is a connected peer: `sangsaeng peers`.
type Peer struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Addrs     []string `json:"addrs"`
	LatencyMs float64  `json:"latencyMs"`
	Channels  []string `json:"channels"`
}

// Partner is an entry of the address book: a company the node dials.
type Partner struct {
	ID    string   `json:"id"`
	Name  string   `json:"name,omitempty"`
	Addrs []string `json:"addrs"`
}

// Channel is a channel as this node knows it.
type Channel struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Admins  []string `json:"admins"`
	Members []string `json:"members"`
	// Heads maps each author to the highest seq held without a gap.
	Heads map[string]uint64 `json:"heads"`
	// Removed maps each removed member to the last seq of theirs that stays valid.
	Removed map[string]uint64 `json:"removed,omitempty"`
	// Flagged lists authors caught signing two records for one seq.
	Flagged []string `json:"flagged,omitempty"`
	// Forks is the fork evidence held: both CIDs of every equivocation.
	Forks []Fork `json:"forks,omitempty"`
	// Sync is how far behind each partner this node was at its last sync.
	Sync []SyncStatus `json:"sync,omitempty"`
}

// SyncStatus is the state of sync with one partner in one channel.
type SyncStatus struct {
	Peer string `json:"peer"`
	// Behind counts the records the partner held that this node still
	// lacked after the last sync (0 when caught up).
	Behind uint64 `json:"behind"`
	// Received counts the records the last sync brought.
	Received uint64 `json:"received"`
	// Last is when the last sync finished (RFC 3339), empty if none has.
	Last string `json:"last,omitempty"`
	// Error is why the last sync failed, if it did.
	Error string `json:"error,omitempty"`
}

// Fork is equivocation evidence: two records by one author for one seq.
type Fork struct {
	Author string   `json:"author"`
	Seq    uint64   `json:"seq"`
	CIDs   []string `json:"cids"`
}

// CreateChannel asks the node to found a channel with itself as admin.
type CreateChannel struct {
	Name        string   `json:"name"`
	Members     []string `json:"members,omitempty"`
	Description string   `json:"description,omitempty"`
}

// InviteRequest names the peer to add to a channel and invite.
type InviteRequest struct {
	Peer string `json:"peer"`
}

// Invite carries an invite code for `sangsaeng channel join`.
type Invite struct {
	Code string `json:"code"`
}

// JoinRequest joins a channel by invite code.
type JoinRequest struct {
	Code string `json:"code"`
}

// RemoveMember asks an admin's node to remove a member from a channel.
type RemoveMember struct {
	Peer string `json:"peer"`
}

// Publish is a record to publish: the kind, the body as JSON, and links.
type Publish struct {
	Kind  string              `json:"kind"`
	Body  json.RawMessage     `json:"body"`
	Links []protocol.JSONLink `json:"links,omitempty"`
}

// Published is the result of a publish.
type Published struct {
	CID string `json:"cid"`
	Seq uint64 `json:"seq"`
}

// Record is a record in its JSON shape.
type Record = protocol.JSONRecord

// Query selects records for `sangsaeng records`. Empty fields do not filter.
type Query struct {
	Channel string `json:"channel,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Author  string `json:"author,omitempty"`
	// Since keeps records whose time is at or after this RFC 3339 time.
	Since string `json:"since,omitempty"`
	// Limit is how many records to list: the daemon's page (100) when 0.
	// Client.Records follows the pages until it has Limit records.
	Limit int `json:"limit,omitempty"`
	// Cursor asks for the page after the one whose NextCursorHeader it is.
	Cursor string `json:"cursor,omitempty"`
}

// NextCursorHeader is the header of a GET /v1/records answer that holds the
// cursor of the next page, when more records follow. A page holds at most
// the limit asked for and, after its first record, some 4 MiB of JSON.
const NextCursorHeader = "Next-Cursor"

// Verify is the result of checking a record: signature, CID, schema,
// membership and chain position.
type Verify struct {
	OK     bool   `json:"ok"`
	CID    string `json:"cid"`
	Author string `json:"author"`
	// Signer is the key that signed the record: the author's own but for
	// a company that changed keys; Key says where the author's key log
	// leaves that key now ("in force", or rotated or revoked later).
	Signer string   `json:"signer,omitempty"`
	Key    string   `json:"key,omitempty"`
	Errors []string `json:"errors"`
	// Disclosed, for a disclosure, is the record it carries, as checked:
	// its signature and CID hold, its author signed it in its channel.
	Disclosed *Disclosed `json:"disclosed,omitempty"`
}

// Disclosed is the original record of a disclosure.
type Disclosed struct {
	CID    string `json:"cid"`
	Kind   string `json:"kind"`
	Author string `json:"author"`
	// AuthorName is the name the author's profile gives, where this node
	// has seen it; empty when the key is unknown here.
	AuthorName string `json:"authorName,omitempty"`
	Channel    string `json:"channel"`
	Seq        uint64 `json:"seq"`
	Time       string `json:"time"`
	// Membership says whether this node checked that the author is a
	// member of the original's channel: "checked" where the node is in
	// that channel, else "not checked": the signature proves who signed,
	// not that the channel is real.
	Membership string `json:"membership"`
}

// Disclose asks the node to pass record CID to Channel.
type Disclose struct {
	CID     string `json:"cid"`
	Channel string `json:"channel"`
	Note    string `json:"note,omitempty"`
}

// Profile is the company profile a node shares with its partners.
type Profile struct {
	Name string `json:"name"`
	// BRN is the Korean business registration number (사업자등록번호), 10 digits.
	BRN string `json:"brn,omitempty"`
}

// Status is the node's health at a glance (GET /v1/status, `sangsaeng status`).
type Status struct {
	// Healthy is false while Problems is not empty.
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	// Started is when the node started (RFC 3339); Uptime in seconds.
	Started       string        `json:"started"`
	UptimeSeconds int64         `json:"uptimeSeconds"`
	Store         StoreStatus   `json:"store"`
	Peers         PeersStatus   `json:"peers"`
	Reachability  Reachability  `json:"reachability"`
	Channels      []ChannelLag  `json:"channels"`
	RecentErrors  []StatusError `json:"recentErrors"`
}

// StoreStatus describes the node's store.
type StoreStatus struct {
	Path      string `json:"path"`
	Encrypted bool   `json:"encrypted"`
	Records   int64  `json:"records"`
	// Bytes is the store's size on disk, as last measured.
	Bytes int64 `json:"bytes"`
	// Errors counts store failures since the node started.
	Errors uint64 `json:"errors"`
}

// PeersStatus counts partners online and known.
type PeersStatus struct {
	// Connected are the partners connected now.
	Connected []PeerRef `json:"connected"`
	// Offline are the members of the node's channels not connected now.
	Offline []PeerRef `json:"offline"`
}

// PeerRef names a peer.
type PeerRef struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// ChannelLag is one channel's state of sync.
type ChannelLag struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Members int    `json:"members"`
	// OwnHead is the seq of this node's last record in the channel.
	OwnHead uint64 `json:"ownHead"`
	// Lag is the most records any one partner held that this node still
	// lacked after its last sync with that partner (0 when caught up).
	Lag uint64 `json:"lag"`
	// Partners is the sync state with each other member.
	Partners []PartnerSync `json:"partners"`
}

// PartnerSync is the state of sync with one member of a channel.
type PartnerSync struct {
	PeerRef
	Online bool `json:"online"`
	// OfflineSince is when its last connection closed, while it is
	// offline; empty when it has not been connected since the node
	// started.
	OfflineSince string `json:"offlineSince,omitempty"`
	// Behind, Last and Error are those of the last sync (see SyncStatus);
	// Last is empty when none has finished since the node started.
	Behind uint64 `json:"behind"`
	Last   string `json:"last,omitempty"`
	Error  string `json:"error,omitempty"`
}

// StatusError is one recent store failure.
type StatusError struct {
	Time    string `json:"time"`
	Op      string `json:"op"`
	Message string `json:"message"`
}

// ImportOptions says how POST /v1/channels/{ch}/import reads the file in
// its body; they travel as query parameters.
type ImportOptions struct {
	Kind     string            `json:"kind"`               // order, despatch-advice, …
	Format   string            `json:"format"`             // csv or xlsx
	Encoding string            `json:"encoding,omitempty"` // CSV: utf-8 or cp949; detected when empty
	Sheet    string            `json:"sheet,omitempty"`    // XLSX: the sheet; the first when empty
	Map      map[string]string `json:"map,omitempty"`      // the company's own headers → field names
	File     string            `json:"file,omitempty"`     // the file's name, for messages
	DryRun   bool              `json:"dryRun,omitempty"`   // check and report, publish nothing
}

// ImportProgress is how far an import is, streamed as it goes when the
// client accepts application/x-ndjson.
type ImportProgress struct {
	Phase     string `json:"phase"` // "check", then "publish"
	Rows      int    `json:"rows"`
	Documents int    `json:"documents"`
	Published int    `json:"published"`
}

// ImportError is a problem with one cell or row of an imported file.
type ImportError struct {
	File    string `json:"file,omitempty"`
	Row     int    `json:"row,omitempty"`
	Column  string `json:"column,omitempty"`
	Value   string `json:"value,omitempty"`
	Rule    string `json:"rule"`
	Message string `json:"message"` // `발주.csv row 14, column 수량: "12OO" is not a number`
}

// ImportedDocument is what an import did with one document.
type ImportedDocument struct {
	DocID   string `json:"docId"`
	Version int64  `json:"docVersion"`
	// Action: "published" (new), "new-version" (changed since the last
	// import; links supersedes to it), "unchanged", "older" (the file's
	// version is below one already published); with dryRun, what would be.
	Action     string `json:"action"`
	CID        string `json:"cid,omitempty"`
	Supersedes string `json:"supersedes,omitempty"`
	Rows       [2]int `json:"rows"` // first and last row in the file
	Lines      int    `json:"lines"`
	// Body, in a dry run's report (its first 100 documents), is the
	// record's body as it would be published.
	Body map[string]any `json:"body,omitempty"`
}

// ImportReport is the answer of an import.
type ImportReport struct {
	File      string   `json:"file,omitempty"`
	Kind      string   `json:"kind"`
	Channel   string   `json:"channel"`
	DryRun    bool     `json:"dryRun"`
	Encoding  string   `json:"encoding,omitempty"`
	Rows      int      `json:"rows"`
	Documents int      `json:"documents"`
	Lines     int      `json:"lines"`
	Published int      `json:"published"`   // new documents
	Versions  int      `json:"newVersions"` // changed documents, published as their next version
	Unchanged int      `json:"unchanged"`
	Older     int      `json:"older"`
	Columns   []string `json:"columns"`
	Ignored   []string `json:"ignoredColumns,omitempty"`
	// ErrorCount counts the problems found; Errors lists the first 200.
	// With any, nothing was published.
	ErrorCount int                `json:"errorCount"`
	Errors     []ImportError      `json:"errors,omitempty"`
	Records    []ImportedDocument `json:"records,omitempty"` // the first 1,000
	Seconds    float64            `json:"seconds"`
}

// ExportOptions says what GET /v1/channels/{ch}/export writes; they
// travel as query parameters.
type ExportOptions struct {
	Format   string `json:"format"`             // jsonl, csv, xlsx, epcis or car
	Kind     string `json:"kind,omitempty"`     // csv and xlsx: required; jsonl: every kind when empty
	Since    string `json:"since,omitempty"`    // records from this time on (RFC 3339 or a date)
	Lang     string `json:"lang,omitempty"`     // csv and xlsx headers: ko (default) or en
	Encoding string `json:"encoding,omitempty"` // csv: utf-8 with a BOM (default) or cp949
	// IDBase is the root of the identifiers in an EPCIS export
	// (https://id.example.co.kr: …/class/<part>/lot/<lot>, …/pty/<brn>);
	// https://id.invalid/<peer ID> when empty, to be configured.
	IDBase string `json:"idBase,omitempty"`
	// CID, for a car bundle, is the one record to bundle (instead of the
	// channel's); WithLinks adds every record it links to, and theirs.
	CID       string `json:"cid,omitempty"`
	WithLinks bool   `json:"withLinks,omitempty"`
	// CrossChannel lets WithLinks follow links into the node's other
	// channels: their records and members then go with the bundle.
	CrossChannel bool `json:"crossChannel,omitempty"`
}

// Order is one order's lifecycle, derived from the records of its
// channel: the latest version of the order (order-change, supersedes),
// the seller's response, shipments, receipts and inspections.
type Order struct {
	DocID    string `json:"docId"`
	Version  int64  `json:"docVersion"`
	Channel  string `json:"channel"`
	CID      string `json:"cid"` // the order's latest version
	Buyer    string `json:"buyer"`
	Seller   string `json:"seller"`
	IssuedAt string `json:"issuedAt"`
	// Status: open, late, done, rejected or cancelled.
	Status   string      `json:"status"`
	Response string      `json:"response,omitempty"` // accepted, changed or rejected
	Lines    []OrderLine `json:"lines"`
}

// OrderLine is one line of an order as far as it got. Quantities are
// decimal strings in the line's unit.
type OrderLine struct {
	LineID    string `json:"lineId"`
	Part      string `json:"part"`
	Unit      string `json:"unit"`
	Ordered   string `json:"ordered"`
	Confirmed string `json:"confirmed,omitempty"` // what the seller confirmed, when it did
	// Status: the seller's lineStatus (accepted, changed, rejected), or
	// cancelled by an order change.
	Status      string     `json:"status,omitempty"`
	Shipped     string     `json:"shipped"`
	Received    string     `json:"received"`
	Accepted    string     `json:"accepted"`
	Rejected    string     `json:"rejected"`
	Open        string     `json:"open"`                // ordered (or confirmed) less what shipped and was not rejected
	Requested   string     `json:"requested,omitempty"` // the requested delivery date
	Promised    string     `json:"promised,omitempty"`  // the seller's confirmed date
	Late        bool       `json:"late"`                // open past the promised (else requested) date
	Shipments   []Shipment `json:"shipments,omitempty"`
	Inspections []LotCheck `json:"inspections,omitempty"`
}

// Shipment is part of a line on a despatch-advice.
type Shipment struct {
	DocID        string   `json:"docId"` // the despatch-advice
	CID          string   `json:"cid"`
	DespatchedAt string   `json:"despatchedAt"`
	Quantity     string   `json:"quantity"`
	Lots         []string `json:"lots,omitempty"`
}

// LotCheck is an inspection of a lot shipped on a line.
type LotCheck struct {
	DocID  string `json:"docId"`
	CID    string `json:"cid"`
	Lot    string `json:"lot"`
	Result string `json:"result"` // pass, fail, conditional
}

// TraceNode is a record in a trace, with the records it links to (Up:
// what it was made from) or that link to it (Down: what was made from
// it).
type TraceNode struct {
	CID     string `json:"cid"`
	Rel     string `json:"rel,omitempty"` // the link that led here
	Kind    string `json:"kind,omitempty"`
	DocID   string `json:"docId,omitempty"`
	Lot     string `json:"lot,omitempty"`
	Author  string `json:"author,omitempty"`
	Channel string `json:"channel,omitempty"`
	Time    string `json:"time,omitempty"`
	Missing bool   `json:"missing,omitempty"` // a record this node does not hold
	// Disclosed: the node holds the record only as the original of a
	// disclosure, its signature checked.
	Disclosed bool        `json:"disclosed,omitempty"`
	Seen      bool        `json:"seen,omitempty"` // shown above already: not expanded again
	Next      []TraceNode `json:"next,omitempty"`
}

// PCF is a lot's product carbon footprint added up from signed records:
// its own carbon-footprint record (what its producer's process adds) and
// the footprints of the lots it consumed, each share with its signer.
// Quantities are decimal strings; footprints kgCO2e (excluding biogenic
// uptake).
type PCF struct {
	CID      string     `json:"cid"` // the production report
	Lot      string     `json:"lot"`
	Part     string     `json:"part"`
	Quantity string     `json:"quantity"`
	Unit     string     `json:"unit"`
	Own      *PCFShare  `json:"own,omitempty"`
	Inputs   []PCFShare `json:"inputs"`
	Total    string     `json:"total"`   // kgCO2e for the lot
	PerUnit  string     `json:"perUnit"` // kgCO2e per unit of the lot
	// Complete is false when a share is missing; Problems says which.
	Complete bool     `json:"complete"`
	Problems []string `json:"problems,omitempty"`
}

// PCFShare is one footprint in a PCF.
type PCFShare struct {
	Lot       string `json:"lot,omitempty"`
	Quantity  string `json:"quantity"`  // of the lot the footprint is for, in its declared unit
	Unit      string `json:"unit"`      // the footprint's declared unit
	PerUnit   string `json:"perUnit"`   // kgCO2e per declared unit
	Share     string `json:"share"`     // kgCO2e
	Footprint string `json:"footprint"` // the carbon-footprint record
	Signer    string `json:"signer"`
	Disclosed bool   `json:"disclosed,omitempty"` // known from a disclosure, its signature checked
}

// LoginCode is a one-time code that signs a browser in to the dashboard:
// `sangsaeng dashboard` prints http://API/login?code=CODE.
type LoginCode struct {
	Code      string `json:"code"`
	ExpiresIn int    `json:"expiresIn"` // seconds
}

// Session is what the dashboard's page learns of its session.
type Session struct {
	// Host is the API's name the session is bound to.
	Host string `json:"host"`
}

// Backlink is a record that links to another.
type Backlink struct {
	CID    string `json:"cid"`
	Rel    string `json:"rel"`
	Kind   string `json:"kind,omitempty"`
	Author string `json:"author,omitempty"`
}

// Receipt is what one member's newest signed receipt says it holds of this
// node's records in a channel (GET /v1/channels/{ch}/receipts).
type Receipt struct {
	Member string `json:"member"`
	Name   string `json:"name,omitempty"`
	// Seq: the member holds this node's records 1..Seq; Head is this
	// node's own head there, for comparison.
	Seq  uint64 `json:"seq"`
	Head uint64 `json:"head"`
	// Since is when the member first said it held up to Seq; Time is its
	// newest receipt's, CID and Envelope (base64url) that receipt, to keep
	// and check offline. Empty when the member has sent none.
	Since    string `json:"since,omitempty"`
	Time     string `json:"time,omitempty"`
	CID      string `json:"cid,omitempty"`
	Envelope string `json:"envelope,omitempty"`
}

// Keys is the company's key log as the node holds it (GET /v1/keys).
type Keys struct {
	// Company is the company's peer ID: its first key.
	Company string `json:"company"`
	// Signer is the key this node signs records with now.
	Signer string `json:"signer"`
	// Entries is how many changes the key log holds.
	Entries int       `json:"entries"`
	Keys    []KeyInfo `json:"keys"`
}

// KeyInfo is one key of the company.
type KeyInfo struct {
	Key string `json:"key"`
	// State is "in force", "rotated" (replaced; it still verifies what it
	// signed before) or "revoked".
	State string `json:"state"`
	// Added is the key-log entry that put it in force; 0 for the first key.
	Added uint64 `json:"added"`
	// At is the entry that rotated or revoked it; By, for a rotation, the
	// key that replaced it.
	At uint64 `json:"at,omitempty"`
	By string `json:"by,omitempty"`
	// From: once out of force, per channel the first seq it no longer
	// signs; it signs nothing in a channel not listed.
	From    map[string]uint64 `json:"from,omitempty"`
	Signing bool              `json:"signing,omitempty"`
}

// KeyChange asks for a rotation or a device key (POST /v1/keys/rotate,
// /v1/keys/devices), or a revocation (POST /v1/keys/revoke: Key, and
// FromSeq in Channel, or in every channel without it; 0 for from the next
// record).
type KeyChange struct {
	Key     string `json:"key,omitempty"`
	FromSeq uint64 `json:"fromSeq,omitempty"`
	Channel string `json:"channel,omitempty"`
	Note    string `json:"note,omitempty"`
}

// KeyChanged is the key a change put in force, and for a device key the
// file the node wrote it to.
type KeyChanged struct {
	Key  string `json:"key"`
	File string `json:"file,omitempty"`
}
