// Building the page from text only. Every string reaches the DOM as a text node or an attribute
// value, never as markup: the shell's CSP enforces Trusted Types, so an HTML sink would throw anyway.

let uid = 0;

/// A fresh element id, for label/for and aria-describedby pairs.
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/// `h('button', {type: 'button', onclick: fn}, 'Text', child…)`. Props starting with `on` and
/// holding a function become listeners; `true` sets a boolean attribute; false/null/undefined skip.
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'value') {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

/// A labelled control: `<p><label for=id>text</label> control</p>`.
export function field(labelText, control, hint) {
  const id = nextId('f');
  control.id = id;
  const parts = [h('label', { for: id }, labelText)];
  if (hint) {
    const hintId = nextId('hint');
    control.setAttribute('aria-describedby', hintId);
    parts.push(h('span', { id: hintId, class: 'hint' }, hint));
  }
  return h('p', { class: 'field' }, ...parts, control);
}

/// A read-only text field holding a value, selected whole on focus for easy copying.
export function readonlyField(labelText, value) {
  const input = h('input', { type: 'text', readonly: true, value, spellcheck: 'false', autocomplete: 'off' });
  input.addEventListener('focus', () => input.select());
  return { p: field(labelText, input), input };
}
