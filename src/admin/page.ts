// The status page: one self-contained HTML document (inline CSS and vanilla JS,
// no build step) that a site administrator keeps open. It reads only:
//   - /api/terminals and /api/status every 2 s (terminals table, counters);
//   - /api/events?order=desc once for the recent log, then
//     EventSource('/api/events/stream?after=N') for the live monitoring log,
//     newest on top, with the administrator's wording (label).
// Everything from the server is put in the page with textContent, never as
// HTML. The Content-Security-Policy (PAGE_CSP) allows exactly this script and
// this stylesheet (by hash) and requests to the same origin.
import { createHash } from 'node:crypto';

const STYLE = `
:root{--bg:#fff;--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--card:#f7f8fa;--ok:#0a7d38;--okbg:#e3f5ea;--warn:#955d00;--warnbg:#fff2d6;--bad:#b42318;--badbg:#fde8e6;--info:#175cd3;--infobg:#e4edfc}
@media (prefers-color-scheme:dark){:root{--bg:#12151b;--fg:#e6e8ec;--muted:#98a2b3;--line:#2a303b;--card:#1a1f27;--ok:#58d38c;--okbg:#133522;--warn:#f5c050;--warnbg:#3a2e10;--bad:#ff8a80;--badbg:#421a17;--info:#8ab4ff;--infobg:#172a4a}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.5rem 1.5rem;padding:.8rem 1.2rem;border-bottom:1px solid var(--line)}
h1{font-size:1.15rem;margin:0}
h2{font-size:1rem;margin:1.2rem 0 .5rem}
main{padding:0 1.2rem 2rem}
.muted{color:var(--muted)}
#banner{display:none;margin:.8rem 0 0;padding:.6rem .8rem;border-radius:6px;background:var(--badbg);color:var(--bad)}
#banner.show{display:block}
.cards{display:flex;flex-wrap:wrap;gap:.6rem;margin-top:.9rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.45rem .8rem;min-width:8.5rem}
.card b{display:block;font-size:1.25rem;font-variant-numeric:tabular-nums}
.card span{font-size:.8rem;color:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .55rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.78rem;text-transform:uppercase;letter-spacing:.03em;color:var(--muted);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .5rem;border-radius:999px;font-size:.8rem;font-weight:600;white-space:nowrap}
.online,.ok{background:var(--okbg);color:var(--ok)}
.offline,.bad{background:var(--badbg);color:var(--bad)}
.pending,.warn{background:var(--warnbg);color:var(--warn)}
.info{background:var(--infobg);color:var(--info)}
.live{display:inline-block;width:.6rem;height:.6rem;border-radius:50%;background:var(--bad);margin-right:.3rem}
.live.on{background:var(--ok)}
#log td{font-size:.9rem}
#log td.time{white-space:nowrap;color:var(--muted);font-variant-numeric:tabular-nums}
#log td.detail{color:var(--muted);word-break:break-word}
#log tr.new{animation:flash 1.2s ease-out}
@keyframes flash{from{background:var(--infobg)}to{background:transparent}}
.toolbar{display:flex;align-items:center;gap:.8rem;flex-wrap:wrap}
input[type=search]{font:inherit;font-weight:normal;font-size:.9rem;padding:.2rem .5rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
.scroll{overflow-x:auto}
`;

const SCRIPT = `
'use strict';
var MAX_LOG = 500;
var lastId = 0;
var stream = null;
var logFilter = '';
function $(id){return document.getElementById(id);}
function el(tag, cls, text){var e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined&&text!==null)e.textContent=String(text);return e;}
function pad(n){return n<10?'0'+n:String(n);}
function clock(ms){var d=new Date(ms);var t=pad(d.getHours())+':'+pad(d.getMinutes())+':'+pad(d.getSeconds());var now=new Date();if(d.toDateString()!==now.toDateString())t=d.getFullYear()+'-'+pad(d.getMonth()+1)+'-'+pad(d.getDate())+' '+t;return t;}
function ago(ms){var s=Math.max(0,Math.round((Date.now()-ms)/1000));if(s<60)return s+' s';var m=Math.round(s/60);if(m<60)return m+' min';var h=Math.round(m/60);if(h<48)return h+' h';return Math.round(h/24)+' d';}
function banner(text){var b=$('banner');b.textContent=text||'';b.className=text?'show':'';}
function AuthError(){this.message='not authorized';}
function getJson(path){
  return fetch(path,{cache:'no-store',headers:{accept:'application/json'}}).then(function(r){
    if(r.status===401)throw new AuthError();
    if(!r.ok)return r.json().then(function(b){throw new Error(path+': '+(b&&b.error?b.error:'HTTP '+r.status));},function(){throw new Error(path+': HTTP '+r.status);});
    return r.json();
  });
}
function problem(e){
  if(e instanceof AuthError)banner('Not authorized: open this page once as /?token=YOUR_ADMIN_TOKEN');
  else banner('Cannot reach the termsync daemon: '+(e&&e.message?e.message:e));
}
function renderTerminals(list){
  var body=$('terminals');var rows=document.createDocumentFragment();
  // several daemons: the daemon that drives each terminal
  var cluster=list.some(function(t){return !!t.lease;});
  $('ownerHead').hidden=!cluster;
  list.forEach(function(t){
    var tr=el('tr');tr.setAttribute('data-terminal',t.id);tr.setAttribute('data-state',t.state);
    tr.appendChild(el('td',null,t.id));
    var st=el('td');st.appendChild(el('span','badge '+t.state,t.state));tr.appendChild(st);
    if(cluster){var ow=el('td',t.owner?null:'muted',t.owner||'no daemon');ow.setAttribute('data-owner',t.owner||'');tr.appendChild(ow);}
    tr.appendChild(el('td',null,t.address||''));
    tr.appendChild(el('td',null,t.protocol||'termsync'));
    tr.appendChild(el('td','num',t.deviceId===null?'':t.deviceId));
    var seen=el('td','seen');
    if(t.lastSeen){seen.textContent=t.state==='online'?'online for '+ago(t.lastSeen):ago(t.lastSeen)+' ago';seen.title=new Date(t.lastSeen).toLocaleString();}
    else seen.textContent='never';
    tr.appendChild(seen);
    tr.appendChild(el('td','num',t.lastEventId));
    tr.appendChild(el('td','num',t.pushesOwed));
    tr.appendChild(el('td',null,(t.accessGroups||[]).join(', ')));
    tr.appendChild(el('td','muted',[t.model,t.firmware].filter(Boolean).join(' ')));
    rows.appendChild(tr);
  });
  body.replaceChildren(rows);
  $('noterminals').hidden=list.length>0;
}
function renderStatus(s){
  $('syncMode').textContent=s.syncMode;
  $('c-online').textContent=s.terminals.online;
  $('c-offline').textContent=s.terminals.offline;
  $('c-pending').textContent=s.terminals.pending;
  var w=s.queue.waiting;
  $('c-queue').textContent=(w.pull+w.push+w.catchup)+' / '+s.queue.running;
  $('c-queue').title='waiting: pull '+w.pull+', push '+w.push+', catch-up '+w.catchup+'; running '+s.queue.running+'; events not yet processed '+s.queue.ingestBacklog;
  $('c-outbox').textContent=s.outbox;
  $('c-failures').textContent=s.pushFailures+(s.pushFailuresMore?'+':'');
  $('c-users').textContent=s.users;
  var dk=s.disk;
  if(dk){$('c-disk').textContent=((dk.dbBytes+dk.walBytes)/1048576).toFixed(1)+' MB';$('c-disk').title='database '+dk.dbBytes+' B, WAL '+dk.walBytes+' B, free inside '+(dk.freePages*dk.pageSize)+' B';}
  else{$('c-disk').textContent='PostgreSQL';$('c-disk').title='the database server keeps the files';}
  if(s.daemon){$('daemon').hidden=false;$('daemonId').textContent=s.daemon;}
  document.title=(s.terminals.offline?'('+s.terminals.offline+' offline) ':'')+'termsync status';
}
function refresh(){
  Promise.all([getJson('/api/terminals'),getJson('/api/status')]).then(function(r){
    renderTerminals(r[0]);renderStatus(r[1]);banner('');
    $('updated').textContent='updated '+clock(Date.now());
  },problem).then(function(){setTimeout(refresh,2000);});
}
function kind(type){
  if(/FAIL/.test(type))return 'bad';
  if(/OFFLINE|PENDING|RESET|GAP|DELETED/.test(type))return 'warn';
  if(/SUCCESS|ONLINE/.test(type))return 'ok';
  return 'info';
}
function detailText(d){
  if(d===null||d===undefined)return '';
  if(typeof d!=='object')return String(d);
  return Object.keys(d).map(function(k){var v=d[k];return k+'='+(typeof v==='object'?JSON.stringify(v):String(v));}).join(' ');
}
function matches(tr){return !logFilter||tr.textContent.toLowerCase().indexOf(logFilter)>=0;}
function addEvent(e,fresh){
  if(e.id<=lastId)return;
  lastId=e.id;
  var tr=el('tr',fresh?'new':null);tr.setAttribute('data-id',e.id);tr.setAttribute('data-type',e.type);
  var t=el('td','time',clock(e.time));t.title=new Date(e.time).toLocaleString();tr.appendChild(t);
  var l=el('td');var b=el('span','badge '+kind(e.type),e.label);b.title=e.type;l.appendChild(b);tr.appendChild(l);
  tr.appendChild(el('td',null,e.terminal||''));
  tr.appendChild(el('td',null,e.user||''));
  var d=detailText(e.detail);tr.appendChild(el('td','detail',d.length>240?d.slice(0,240)+'…':d));
  tr.hidden=!matches(tr);
  var log=$('log');log.insertBefore(tr,log.firstChild);
  while(log.childNodes.length>MAX_LOG)log.removeChild(log.lastChild);
  $('nolog').hidden=true;
}
function setLive(on,text){$('live').className=on?'live on':'live';$('livetext').textContent=text;}
function openStream(){
  if(stream)stream.close();
  stream=new EventSource('/api/events/stream?after='+lastId);
  stream.onopen=function(){setLive(true,'live');};
  stream.onmessage=function(m){try{addEvent(JSON.parse(m.data),true);}catch(err){}};
  stream.onerror=function(){
    setLive(false,'reconnecting…');
    // EventSource retries by itself unless the server refused the stream
    if(stream.readyState===EventSource.CLOSED)setTimeout(startLog,5000);
  };
}
function startLog(){
  getJson('/api/events?order=desc&limit=100').then(function(list){
    for(var i=list.length-1;i>=0;i--)addEvent(list[i],false);
    openStream();
  },function(e){problem(e);setLive(false,'offline');setTimeout(startLog,5000);});
}
$('filter').addEventListener('input',function(){
  logFilter=this.value.trim().toLowerCase();
  Array.prototype.forEach.call($('log').childNodes,function(tr){tr.hidden=!matches(tr);});
});
refresh();
startLog();
`;

const BODY = `<header>
<h1>termsync</h1>
<span>sync mode: <b id="syncMode">…</b></span>
<span id="daemon" hidden>daemon: <b id="daemonId"></b></span>
<span class="muted" id="updated"></span>
<a href="/console/">Open the operator console</a>
</header>
<main>
<div id="banner" role="alert"></div>
<div class="cards">
<div class="card"><b id="c-online">–</b><span>terminals online</span></div>
<div class="card"><b id="c-offline">–</b><span>offline</span></div>
<div class="card"><b id="c-pending">–</b><span>pending approval</span></div>
<div class="card"><b id="c-queue">–</b><span>queued / running jobs</span></div>
<div class="card"><b id="c-outbox">–</b><span>pushes owed (outbox)</span></div>
<div class="card"><b id="c-failures">–</b><span>push failures</span></div>
<div class="card"><b id="c-users">–</b><span>users on the server</span></div>
<div class="card"><b id="c-disk">–</b><span>database on disk</span></div>
</div>
<h2>Terminals</h2>
<div class="scroll"><table>
<thead><tr><th>Terminal</th><th>State</th><th id="ownerHead" hidden>Driven by</th><th>Address</th><th>Protocol</th><th>Device ID</th><th>Last seen</th><th>Last event</th><th>Pushes owed</th><th>Access groups</th><th>Model</th></tr></thead>
<tbody id="terminals"></tbody>
</table></div>
<p class="muted" id="noterminals" hidden>No terminals configured.</p>
<h2 class="toolbar">Monitoring log <span class="muted"><span id="live" class="live"></span><span id="livetext">connecting…</span></span>
<input type="search" id="filter" placeholder="filter" aria-label="filter the monitoring log"></h2>
<div class="scroll"><table>
<thead><tr><th>Time</th><th>Event</th><th>Terminal</th><th>User</th><th>Detail</th></tr></thead>
<tbody id="log"></tbody>
</table></div>
<p class="muted" id="nolog">No monitoring events yet.</p>
</main>`;

const hash = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** The whole page. */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>termsync status</title>
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

/** Content-Security-Policy for the page: this script and stylesheet only, requests to the same origin. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
