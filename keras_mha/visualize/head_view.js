// The head view of keras_mha.visualize: queries on the left, keys on the
// right, one colour per head. Hovering (or clicking, which pins) a token
// draws its links in every selected head and fills each head's box beside
// the tokens at the other end with an opacity equal to the weight.
// `root` holds the markup of head_view.py and its JSON data.
function kmhaHeadView(root) {
  "use strict";
  const data = JSON.parse(root.querySelector(".kmha-data").textContent);
  const ROW = 24; // px per token row; the SVG lines meet the rows' middles.
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  const select = root.querySelector(".kmha-layer");
  const headBar = root.querySelector(".kmha-heads");
  const columns = {
    query: root.querySelector(".kmha-queries"),
    key: root.querySelector(".kmha-keys"),
  };
  const svg = root.querySelector(".kmha-lines");
  const state = { layer: 0, selected: [], pinned: null };

  function colour(head) {
    const count = data.layers[state.layer].attention.length;
    if (count <= PALETTE.length) return PALETTE[head];
    return "hsl(" + Math.round((360 * head) / count) + ", 70%, 45%)";
  }

  // weight(h, i, j): head h, query i, key j of the current layer.
  function weight(head, query, key) {
    return data.layers[state.layer].attention[head][query][key];
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderTokens(side, tokens, heads) {
    const column = columns[side];
    column.replaceChildren();
    tokens.forEach(function (token, index) {
      const row = element("div", "kmha-token");
      row.dataset.side = side;
      row.dataset.tokenIndex = String(index);
      const boxes = element("span", "kmha-boxes");
      for (let head = 0; head < heads; head++) {
        const box = element("span", "kmha-box");
        box.dataset.head = String(head);
        box.style.background = colour(head);
        box.style.opacity = "0";
        boxes.appendChild(box);
      }
      const text = element("span", "kmha-text", token);
      // Boxes face the other column: after the queries, before the keys.
      if (side === "query") row.append(text, boxes);
      else row.append(boxes, text);
      row.addEventListener("mouseenter", function () {
        if (!state.pinned) show(side, index);
      });
      row.addEventListener("mouseleave", function () {
        if (!state.pinned) show(null, null);
      });
      row.addEventListener("click", function () {
        const same = state.pinned && state.pinned.side === side &&
          state.pinned.index === index;
        state.pinned = same ? null : { side: side, index: index };
        show(side, same ? null : index);
      });
      column.appendChild(row);
    });
    column.style.height = tokens.length * ROW + "px";
  }

  function line(query, key, head, opacity) {
    const path = document.createElementNS("http://www.w3.org/2000/svg", "line");
    // Heads a few pixels apart, so that equal links do not hide each other.
    const heads = data.layers[state.layer].attention.length;
    const shift = 3 * (head - (heads - 1) / 2) * (heads > 6 ? 0.5 : 1);
    path.setAttribute("x1", "0");
    path.setAttribute("x2", "100%");
    path.setAttribute("y1", String(query * ROW + ROW / 2 + shift));
    path.setAttribute("y2", String(key * ROW + ROW / 2 + shift));
    path.setAttribute("stroke", colour(head));
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-opacity", String(opacity));
    svg.appendChild(path);
  }

  // Highlights what token `index` of `side` links to (null: every link,
  // faintly, and no boxes).
  function show(side, index) {
    const layer = data.layers[state.layer];
    svg.replaceChildren();
    root.querySelectorAll(".kmha-token").forEach(function (row) {
      row.classList.remove("kmha-active", "kmha-attended");
      row.querySelector(".kmha-text").style.background = "";
      row.querySelectorAll(".kmha-box").forEach(function (box) {
        box.style.opacity = "0";
      });
    });
    const queries = layer.queries.length, keys = layer.keys.length;
    if (index === null) {
      state.selected.forEach(function (head) {
        for (let i = 0; i < queries; i++) {
          for (let j = 0; j < keys; j++) {
            const w = weight(head, i, j);
            if (w > 0) line(i, j, head, w / state.selected.length);
          }
        }
      });
      return;
    }
    const other = side === "query" ? "key" : "query";
    columns[side].children[index].classList.add("kmha-active");
    const count = side === "query" ? keys : queries;
    for (let k = 0; k < count; k++) {
      const row = columns[other].children[k];
      let strongest = 0;
      state.selected.forEach(function (head) {
        const w = side === "query" ? weight(head, index, k) :
          weight(head, k, index);
        row.querySelector('.kmha-box[data-head="' + head + '"]')
          .style.opacity = String(w);
        strongest = Math.max(strongest, w);
        if (w > 0) {
          if (side === "query") line(index, k, head, w);
          else line(k, index, head, w);
        }
      });
      if (strongest > 0) {
        // The text as bright as the strongest link of the selected heads.
        row.classList.add("kmha-attended");
        row.querySelector(".kmha-text").style.background =
          "rgba(255, 193, 7, " + strongest + ")";
      }
    }
  }

  function renderHeads(heads) {
    headBar.replaceChildren();
    for (let head = 0; head < heads; head++) {
      const button = element("button", "kmha-head", String(head));
      button.type = "button";
      button.dataset.head = String(head);
      button.style.background = colour(head);
      button.title = "Click: show or hide head " + head +
        ". Double-click: this head alone.";
      button.addEventListener("click", function () {
        const at = state.selected.indexOf(head);
        if (at >= 0) state.selected.splice(at, 1);
        else state.selected.push(head);
        update();
      });
      button.addEventListener("dblclick", function () {
        state.selected = [head];
        update();
      });
      headBar.appendChild(button);
    }
  }

  // Boxes and buttons of hidden heads disappear; the view is redrawn.
  function update() {
    const shown = function (head) {
      return state.selected.indexOf(Number(head)) >= 0;
    };
    root.querySelectorAll(".kmha-head").forEach(function (button) {
      button.setAttribute("aria-pressed", String(shown(button.dataset.head)));
    });
    root.querySelectorAll(".kmha-box").forEach(function (box) {
      box.style.display = shown(box.dataset.head) ? "" : "none";
    });
    const pinned = state.pinned;
    show(pinned ? pinned.side : null, pinned ? pinned.index : null);
  }

  function renderLayer(layerIndex) {
    state.layer = layerIndex;
    state.pinned = null;
    const layer = data.layers[layerIndex];
    const heads = layer.attention.length;
    state.selected = Array.from({ length: heads }, function (_, h) {
      return h;
    });
    renderHeads(heads);
    renderTokens("query", layer.queries, heads);
    renderTokens("key", layer.keys, heads);
    svg.style.height =
      Math.max(layer.queries.length, layer.keys.length) * ROW + "px";
    root.querySelector(".kmha-query-title").textContent = layer.query_side;
    root.querySelector(".kmha-key-title").textContent = layer.key_side;
    root.querySelectorAll("table.head-table").forEach(function (table) {
      table.hidden = table.dataset.layer !== layer.name;
    });
    update();
  }

  data.layers.forEach(function (layer, index) {
    const option = element("option", null, layer.name + " (" + layer.kind +
      ")");
    option.value = String(index);
    select.appendChild(option);
  });
  select.addEventListener("change", function () {
    renderLayer(Number(select.value));
  });
  renderLayer(0);
}
