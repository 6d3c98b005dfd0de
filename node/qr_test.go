package node

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"image"
	"image/png"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/multiformats/go-multihash"
)

// TestQRInvite: an invite code of a node with many addresses (loopback,
// LAN, a container bridge and an observed public address, each over TCP
// and QUIC, IPv4 and IPv6) and two relays (each by TCP and QUIC) fits
// GET /v1/qr's limit; the PNG it draws has every module the same whole
// number of pixels, at least 3, and a QR decoder reads the code back from
// it.
func TestQRInvite(t *testing.T) {
	newID := func() string {
		t.Helper()
		_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return id.String()
	}
	mh, err := multihash.Sum([]byte("한빛-대성"), multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	iv := invite{Channel: cid.NewCidV1(cid.DagCBOR, mh).String(), Inviter: newID()}
	for _, ip := range []string{"/ip4/127.0.0.1", "/ip4/192.168.10.24", "/ip4/172.17.0.1", "/ip4/211.234.10.77", "/ip6/::1", "/ip6/2001:db8:4a1:7700:1c2e:8bff:fe3a:91d4"} {
		iv.Addrs = append(iv.Addrs, ip+"/tcp/4801", ip+"/udp/4801/quic-v1")
	}
	for _, relay := range []string{"/ip4/203.0.113.10", "/ip4/198.51.100.23"} {
		id := newID()
		iv.Addrs = append(iv.Addrs, relay+"/tcp/4801/p2p/"+id+"/p2p-circuit", relay+"/udp/4801/quic-v1/p2p/"+id+"/p2p-circuit")
	}
	code := encodeInvite(iv)
	if len(code) > maxQRText {
		t.Fatalf("an invite code with %d addresses is %d bytes, over the QR limit of %d", len(iv.Addrs), len(code), maxQRText)
	}
	t.Logf("invite code with %d addresses: %d bytes", len(iv.Addrs), len(code))
	checkQR(t, code)

	// The limit itself draws, and one byte more is refused with a reason.
	long := strings.Repeat("ssinv1.eyJjIjoiYmFma3JlaWdoNGxqN3A3", maxQRText)[:maxQRText]
	checkQR(t, long)
	_, err = apiQR(nil, httptest.NewRequest("GET", "/v1/qr?text="+url.QueryEscape(long+"x"), nil))
	var bad badRequest
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), fmt.Sprint(maxQRText)) {
		t.Fatalf("a text over the limit: %v, want a bad request naming the limit", err)
	}
}

// checkQR draws text with apiQR and checks the PNG: square, a whole
// number of pixels per module (measured on the top-left finder pattern,
// 7 modules wide), at least qrMinModule, and text read back by a decoder.
func checkQR(t *testing.T, text string) {
	t.Helper()
	v, err := apiQR(nil, httptest.NewRequest("GET", "/v1/qr?text="+url.QueryEscape(text), nil))
	if err != nil {
		t.Fatalf("apiQR of %d bytes: %v", len(text), err)
	}
	raw, ok := v.(rawBody)
	if !ok || raw.ctype != "image/png" {
		t.Fatalf("apiQR answered %T %q", v, raw.ctype)
	}
	img, err := png.Decode(bytes.NewReader(raw.b))
	if err != nil {
		t.Fatalf("the QR code is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != b.Dy() {
		t.Fatalf("the QR code is %dx%d", b.Dx(), b.Dy())
	}
	dark := func(x, y int) bool { r, _, _, _ := img.At(x, y).RGBA(); return r < 0x8000 }
	x0, y0 := -1, -1
	for y := b.Min.Y; y < b.Max.Y && y0 < 0; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if dark(x, y) {
				x0, y0 = x, y
				break
			}
		}
	}
	if y0 < 0 {
		t.Fatal("the QR code is blank")
	}
	run := 0
	for x := x0; x < b.Max.X && dark(x, y0); x++ {
		run++
	}
	px := run / 7
	modules := b.Dx() / max(px, 1)
	if run%7 != 0 || px < qrMinModule || b.Dx()%px != 0 || (modules-8-17)%4 != 0 || x0 != 4*px || y0 != 4*px {
		t.Fatalf("QR code of %d bytes: %dx%d px, finder pattern %d px wide at (%d,%d): want a whole number of at least %d px per module, a 4-module quiet zone",
			len(text), b.Dx(), b.Dy(), run, x0, y0, qrMinModule)
	}
	t.Logf("QR code of %d bytes: version %d, %d px per module, %d px wide", len(text), (modules-8-17)/4, px, b.Dx())
	checkDecodes(t, img, text)
}

// checkDecodes reads the QR code in img with a decoder and compares its
// text.
func checkDecodes(t *testing.T, img image.Image, want string) {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatalf("the QR code of %d bytes does not decode: %v", len(want), err)
	}
	if got := res.GetText(); got != want {
		t.Fatalf("the QR code decodes to %d bytes %q…, want %q…", len(got), got[:min(len(got), 40)], want[:min(len(want), 40)])
	}
}
