package interchange

import "strings"

// field is a column a kind takes: its snake_case header (the field's name
// in the CSV contract), its Korean headers, where its value goes in the
// record body, and how it is read. A path that starts with the kind's
// group ("lines.", "consumed.", "characteristics.") belongs to the row's
// entry in that array; any other is the document's, repeated on each row.
type field struct {
	name string
	ko   []string
	path string
	kind valueKind
	enum []string
}

// kindSpec is how a kind's documents are laid out in a table.
type kindSpec struct {
	kind  string
	group string // the array one row adds an entry to; "" for one row per document
	self  string // the party this company is when the file names none
	// docKo are the Korean headers of the document number, which differ
	// by kind (발주번호, 납품서번호 …).
	fields []field
}

func docFields(docKo ...string) []field {
	return []field{
		{name: "doc_id", ko: docKo, path: "docId", kind: vCode},
		{name: "doc_version", ko: []string{"차수", "버전", "개정차수"}, path: "docVersion", kind: vInt},
	}
}

func partyFields(role string, ko ...string) []field {
	// ko: the Korean names of the company in this role (발주처, 공급사 …).
	var ids, names []string
	for _, k := range ko {
		ids = append(ids, k+"사업자번호", k+"코드", k+"ID")
		names = append(names, k, k+"명")
	}
	return []field{
		{name: role + "_id", ko: ids, path: role + ".id", kind: vParty},
		{name: role + "_scheme", ko: nil, path: role + ".scheme", kind: vScheme},
		{name: role + "_name", ko: names, path: role + ".name", kind: vText},
	}
}

func itemFields(prefix string, buyerKo, supplierKo []string) []field {
	return []field{
		{name: "buyer_part_no", ko: buyerKo, path: prefix + "item.buyerPartNo", kind: vCode},
		{name: "supplier_part_no", ko: supplierKo, path: prefix + "item.supplierPartNo", kind: vCode},
		{name: "gtin", ko: []string{"바코드"}, path: prefix + "item.gtin", kind: vCode},
		{name: "revision", ko: []string{"리비전", "도면차수"}, path: prefix + "item.revision", kind: vCode},
		{name: "description", ko: []string{"품명", "품목명"}, path: prefix + "item.description", kind: vText},
	}
}

func quantityFields(name, path string, ko []string, unitName string, unitKo []string) []field {
	return []field{
		{name: name, ko: ko, path: path + ".value", kind: vDecimal},
		{name: unitName, ko: unitKo, path: path + ".unit", kind: vUnit},
	}
}

func cat(parts ...[]field) []field {
	var out []field
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var unitKo = []string{"단위"}

// specs are the kinds a table can hold.
var specs = map[string]*kindSpec{
	"order": {kind: "order", group: "lines", self: "buyer", fields: cat(
		docFields("발주번호", "PO번호", "주문번호"),
		[]field{{name: "issue_date", ko: []string{"발주일자", "발주일", "주문일자"}, path: "issuedAt", kind: vDateTime}},
		partyFields("buyer", "발주처", "고객사"),
		partyFields("seller", "공급사", "협력사", "업체"),
		[]field{{name: "line_id", ko: []string{"항번", "순번", "라인번호"}, path: "lines.lineId", kind: vCode}},
		itemFields("lines.", []string{"고객품번", "품번"}, []string{"자사품번", "공급사품번"}),
		quantityFields("quantity", "lines.quantity", []string{"수량", "발주수량"}, "unit", unitKo),
		[]field{
			{name: "requested_delivery_date", ko: []string{"납기일자", "납기일", "납기", "납기요청일"}, path: "lines.requestedDelivery.date", kind: vDate},
			{name: "unit_price", ko: []string{"단가"}, path: "lines.unitPrice.amount", kind: vDecimal},
			{name: "line_amount", ko: []string{"금액", "공급가액"}, path: "lines.lineAmount", kind: vDecimal},
			{name: "line_ship_to", ko: []string{"납품장소", "납품처"}, path: "lines.shipTo.id", kind: vCode},
			{name: "drawing_revision", ko: []string{"도면번호차수"}, path: "lines.drawingRevision", kind: vCode},
			{name: "currency", ko: []string{"통화"}, path: "currency", kind: vCurrency},
			{name: "ship_to", ko: []string{"입고처", "배송지"}, path: "shipTo.id", kind: vCode},
			{name: "incoterm", ko: []string{"인도조건"}, path: "incoterm", kind: vCode},
			{name: "payment_terms", ko: []string{"결제조건"}, path: "paymentTerms", kind: vText},
			{name: "contract_ref", ko: []string{"계약번호"}, path: "contractRef", kind: vCode},
			{name: "order_type", ko: []string{"발주유형"}, path: "orderType", kind: vEnum, enum: []string{"standard", "call-off", "sample"}},
			{name: "note", ko: []string{"비고", "메모"}, path: "note", kind: vText},
		},
	)},
	"despatch-advice": {kind: "despatch-advice", group: "lines", self: "seller", fields: cat(
		docFields("납품서번호", "출하번호", "송장번호"),
		[]field{
			{name: "issue_date", ko: []string{"발행일자", "작성일자"}, path: "issuedAt", kind: vDateTime},
			{name: "despatched_at", ko: []string{"출하일시", "출하일자", "납품일자", "출하일"}, path: "despatchedAt", kind: vDateTime},
		},
		partyFields("seller", "공급사", "협력사", "업체"),
		partyFields("buyer", "고객사", "발주처", "납품처"),
		[]field{
			{name: "line_id", ko: []string{"항번", "순번", "라인번호"}, path: "lines.lineId", kind: vCode},
			{name: "order_doc_id", ko: []string{"발주번호", "PO번호"}, path: "lines.orderRef.docId", kind: vCode},
			{name: "order_line_id", ko: []string{"발주항번", "발주순번"}, path: "lines.orderRef.lineId", kind: vCode},
		},
		itemFields("lines.", []string{"고객품번", "품번"}, []string{"자사품번", "공급사품번"}),
		quantityFields("quantity", "lines.quantity", []string{"수량", "납품수량", "출하수량"}, "unit", unitKo),
		[]field{
			{name: "lot_id", ko: []string{"LOT번호", "로트번호", "LOT", "로트"}, path: "lines.lotIds", kind: vList},
			{name: "serials", ko: []string{"시리얼번호", "일련번호"}, path: "lines.serials", kind: vList},
			{name: "package_id", ko: []string{"포장번호", "박스번호"}, path: "lines.packageId", kind: vCode},
			{name: "ship_to", ko: []string{"입고처", "배송지"}, path: "shipTo.id", kind: vCode},
			{name: "estimated_arrival", ko: []string{"도착예정일시", "도착예정일"}, path: "estimatedArrival", kind: vDateTime},
			{name: "carrier", ko: []string{"운송사", "택배사"}, path: "carrier", kind: vText},
			{name: "tracking_no", ko: []string{"운송장번호", "송장번호2"}, path: "trackingNo", kind: vCode},
		},
	)},
	"receipt": {kind: "receipt", group: "lines", self: "buyer", fields: cat(
		docFields("입고번호", "검수번호"),
		[]field{
			{name: "issue_date", ko: []string{"발행일자", "작성일자"}, path: "issuedAt", kind: vDateTime},
			{name: "received_at", ko: []string{"입고일시", "입고일자", "입고일"}, path: "receivedAt", kind: vDateTime},
			{name: "despatch_ref", ko: []string{"납품서번호", "출하번호"}, path: "despatchRef.docId", kind: vCode},
		},
		partyFields("buyer", "고객사", "발주처"),
		partyFields("seller", "공급사", "협력사", "업체"),
		[]field{{name: "line_id", ko: []string{"항번", "순번", "라인번호"}, path: "lines.lineId", kind: vCode}},
		itemFields("lines.", []string{"고객품번", "품번"}, []string{"자사품번", "공급사품번"}),
		quantityFields("quantity_received", "lines.quantityReceived", []string{"입고수량", "수량"}, "unit", unitKo),
		[]field{
			{name: "quantity_accepted", ko: []string{"합격수량", "양품수량"}, path: "lines.quantityAccepted.value", kind: vDecimal},
			{name: "quantity_rejected", ko: []string{"불합격수량", "불량수량"}, path: "lines.quantityRejected.value", kind: vDecimal},
			{name: "reject_reason", ko: []string{"불량사유", "불합격사유"}, path: "lines.rejectReason", kind: vText},
		},
	)},
	"production-report": {kind: "production-report", group: "consumed", self: "producer", fields: cat(
		docFields("실적번호", "생산실적번호"),
		partyFields("producer", "생산자", "생산처"),
		[]field{
			{name: "site", ko: []string{"공장", "사업장", "생산공장"}, path: "site.id", kind: vCode},
			{name: "lot_id", ko: []string{"LOT번호", "로트번호", "LOT", "로트"}, path: "lotId", kind: vCode},
			{name: "completed_at", ko: []string{"생산일시", "완료일시", "생산일자"}, path: "completedAt", kind: vDateTime},
			{name: "started_at", ko: []string{"시작일시"}, path: "startedAt", kind: vDateTime},
			{name: "work_order_id", ko: []string{"작업지시번호", "지시번호"}, path: "workOrderId", kind: vCode},
			{name: "equipment", ko: []string{"설비", "설비명"}, path: "equipment", kind: vText},
			{name: "shift", ko: []string{"근무조", "작업조"}, path: "shift", kind: vText},
		},
		itemFields("", []string{"고객품번"}, []string{"품번", "자사품번"}),
		quantityFields("quantity_good", "quantityGood", []string{"양품수량", "생산수량"}, "unit", unitKo),
		[]field{
			{name: "quantity_scrap", ko: []string{"불량수량", "폐기수량"}, path: "quantityScrap.value", kind: vDecimal},
			{name: "quantity_rework", ko: []string{"재작업수량"}, path: "quantityRework.value", kind: vDecimal},
			{name: "consumed_part_no", ko: []string{"투입품번", "자재품번"}, path: "consumed.item.supplierPartNo", kind: vCode},
			{name: "consumed_lot_id", ko: []string{"투입LOT번호", "자재LOT번호", "투입로트"}, path: "consumed.lotId", kind: vCode},
			{name: "consumed_quantity", ko: []string{"투입수량", "자재수량"}, path: "consumed.quantity.value", kind: vDecimal},
			{name: "consumed_unit", ko: []string{"투입단위", "자재단위"}, path: "consumed.quantity.unit", kind: vUnit},
			{name: "consumed_despatch_ref", ko: []string{"자재납품서번호"}, path: "consumed.supplierDespatchRef.docId", kind: vCode},
		},
	)},
	"quality-inspection": {kind: "quality-inspection", group: "characteristics", self: "inspector", fields: cat(
		docFields("검사번호", "성적서번호"),
		partyFields("inspector", "검사자", "검사기관"),
		[]field{
			{name: "inspected_at", ko: []string{"검사일시", "검사일자", "검사일"}, path: "inspectedAt", kind: vDateTime},
			{name: "inspection_type", ko: []string{"검사구분", "검사유형"}, path: "inspectionType", kind: vEnum, enum: []string{"incoming", "in_process", "final", "outgoing"}},
			{name: "lot_id", ko: []string{"LOT번호", "로트번호", "LOT", "로트"}, path: "lotId", kind: vCode},
			{name: "sample_size", ko: []string{"시료수", "샘플수"}, path: "sampleSize", kind: vInt},
			{name: "result", ko: []string{"판정", "검사결과", "결과"}, path: "result", kind: vEnum, enum: []string{"pass", "fail", "conditional"}},
			{name: "despatch_ref", ko: []string{"납품서번호"}, path: "despatchRef.docId", kind: vCode},
			{name: "test_procedure_ref", ko: []string{"검사기준서"}, path: "testProcedureRef", kind: vText},
			{name: "characteristic", ko: []string{"검사항목", "측정항목"}, path: "characteristics.name", kind: vText},
			{name: "nominal", ko: []string{"기준값", "규격값"}, path: "characteristics.nominal", kind: vDecimal},
			{name: "lower_limit", ko: []string{"하한", "하한값"}, path: "characteristics.lowerLimit", kind: vDecimal},
			{name: "upper_limit", ko: []string{"상한", "상한값"}, path: "characteristics.upperLimit", kind: vDecimal},
			{name: "characteristic_unit", ko: []string{"측정단위"}, path: "characteristics.unit", kind: vUnit},
			{name: "characteristic_result", ko: []string{"항목판정"}, path: "characteristics.result", kind: vEnum, enum: []string{"pass", "fail", "conditional"}},
		},
		itemFields("", []string{"고객품번"}, []string{"품번", "자사품번"}),
	)},
	"inventory": {kind: "inventory", self: "owner", fields: cat(
		docFields("재고번호", "재고문서번호"),
		partyFields("owner", "소유자", "보관처"),
		[]field{
			{name: "as_of", ko: []string{"기준일시", "기준일자", "재고일자"}, path: "asOf", kind: vDateTime},
			{name: "site", ko: []string{"창고", "공장", "사업장"}, path: "site.id", kind: vCode},
			{name: "lot_id", ko: []string{"LOT번호", "로트번호", "LOT", "로트"}, path: "lotId", kind: vCode},
			{name: "stock_status", ko: []string{"재고상태", "상태"}, path: "stockStatus", kind: vEnum, enum: []string{"available", "blocked", "quality_hold", "in_transit"}},
			{name: "direction", ko: []string{"입출구분"}, path: "direction", kind: vEnum, enum: []string{"inbound", "outbound"}},
		},
		itemFields("", []string{"고객품번"}, []string{"품번", "자사품번"}),
		quantityFields("quantity", "quantity", []string{"재고수량", "수량"}, "unit", unitKo),
		[]field{{name: "safety_stock", ko: []string{"안전재고"}, path: "safetyStock.value", kind: vDecimal}},
	)},
}

// Kinds lists the kinds a table can be imported as.
func Kinds() []string {
	return []string{"order", "despatch-advice", "receipt", "production-report", "quality-inspection", "inventory"}
}

// normHeader is how headers compare: case, spaces, dots and underscores
// do not count ("LOT 번호", "lot_no" and "Lot No." are one).
func normHeader(s string) string {
	s = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(s, "\ufeff")))
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '_', '-', '.', '(', ')', '\t':
			return -1
		}
		return r
	}, s)
}
