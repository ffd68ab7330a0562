// Renders /api/openapi.json: every route with its parameters, body and
// answers, grouped by tag. No library.
'use strict';

const el = (tag, attributes, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
};

// `#/components/schemas/X` -> the schema X.
function resolve(doc, schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split('/').pop();
    return { name, ...(doc.components && doc.components.schemas ? doc.components.schemas[name] : {}) };
  }
  return schema || {};
}

function schemaText(doc, schema) {
  const s = resolve(doc, schema);
  if (s.name) return s.name;
  if (s.type === 'array') return `array of ${schemaText(doc, s.items)}`;
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  return s.type || (s.properties ? 'object' : '');
}

function operation(doc, path, method, op) {
  const security = op.security || doc.security || [];
  const auth = security.length ? security.map((s) => Object.keys(s).join(', ')).join(' or ') : 'none';
  const section = el('section', { class: 'panel op', id: `${method}-${path}` },
    el('h3', {}, el('code', { class: `method ${method}` }, method.toUpperCase()), ' ', el('code', {}, path)),
    op.summary ? el('p', {}, op.summary) : null,
    op.description ? el('p', { class: 'hint' }, op.description) : null,
    el('p', { class: 'hint' }, `auth: ${auth}`));
  const params = (op.parameters || []).map((p) => resolve(doc, p));
  if (params.length) {
    section.append(el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, el('th', {}, 'parameter'), el('th', {}, 'in'), el('th', {}, 'required'), el('th', {}, 'type'), el('th', {}, 'description'))),
      el('tbody', {}, ...params.map((p) => el('tr', {}, el('td', {}, el('code', {}, p.name)), el('td', {}, p.in),
        el('td', {}, p.required ? 'yes' : 'no'), el('td', {}, schemaText(doc, p.schema)), el('td', {}, p.description || '')))),
    ));
  }
  if (op.requestBody) {
    const content = op.requestBody.content || {};
    const types = Object.entries(content).map(([type, c]) => `${type}: ${schemaText(doc, c.schema)}`).join('; ');
    section.append(el('p', {}, el('b', {}, 'body '), op.requestBody.description || '', types ? ` (${types})` : ''));
  }
  const answers = Object.entries(op.responses || {});
  section.append(el('ul', { class: 'answers' }, ...answers.map(([status, r]) => {
    const resolved = resolve(doc, r);
    return el('li', {}, el('code', {}, status), ' ', resolved.description || '');
  })));
  return section;
}

async function render() {
  const root = document.getElementById('docs');
  let doc;
  try {
    const response = await fetch('/api/openapi.json');
    doc = await response.json();
  } catch (e) {
    root.replaceChildren(el('p', { class: 'error' }, `Could not load /api/openapi.json: ${e.message}`));
    return;
  }
  const info = doc.info || {};
  const intro = el('section', { class: 'panel' }, el('h2', {}, `${info.title || 'API'} ${info.version || ''}`),
    info.description ? el('p', {}, info.description) : null);
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      const tag = (op.tags && op.tags[0]) || path.split('/')[1] || 'other';
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operation(doc, path, method, op));
    }
  }
  const toc = el('nav', { class: 'panel toc' }, el('h2', {}, 'Routes'),
    el('ul', {}, ...[...groups.keys()].map((tag) => el('li', {}, el('a', { href: `#tag-${tag}` }, tag)))));
  const sections = [...groups.entries()].map(([tag, ops]) => el('div', { id: `tag-${tag}` }, el('h2', { class: 'tag' }, tag), ...ops));
  root.replaceChildren(intro, toc, ...sections);
}

render();
