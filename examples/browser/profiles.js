// profile-streams in a web page, with no build step: sends a `page` record when the page
// loads and a `track` record when an element with a data-track attribute is clicked, to the
// ingestion API of `profiles serve` (POST /api/ingest/batch). Include it as
//
//   <script src="profiles.js" defer data-endpoint="https://profiles.example.com"
//           data-app-id="acme-app" data-write-key="A WRITE KEY OF acme-app"></script>
//   <button data-track="Report Created">Create report</button>
//
// and call profiles.track(name, properties) or profiles.page() from your own code. The write
// key is public in the page: it writes records of its app only, and reads nothing. The user
// is anonymous here: an id kept in localStorage (an identify record would name it).
(() => {
  "use strict";
  const { endpoint, appId, writeKey } = document.currentScript.dataset;
  const url = endpoint.replace(/\/+$/, "") + "/api/ingest/batch";

  function userId() {
    let id = localStorage.getItem("profiles.anonymous_id");
    if (!id) {
      id = "anon-" + crypto.randomUUID();
      localStorage.setItem("profiles.anonymous_id", id);
    }
    return id;
  }

  function record(type, fields) {
    return {
      type,
      app_id: appId,
      user_id: userId(),
      event_id: crypto.randomUUID(), // the fold drops a record sent twice by its event_id
      timestamp: Date.now(),
      context: {
        page_url: location.href,
        page_title: document.title,
        language: navigator.language,
      },
      ...fields,
    };
  }

  // Resolves to the API's answer: {accepted, refused, results: [{index, status, reason}]}.
  async function send(records) {
    const answer = await fetch(url, {
      method: "POST",
      headers: { Authorization: "Bearer " + writeKey, "Content-Type": "application/json" },
      body: JSON.stringify({ records }),
      credentials: "omit",
    });
    const body = await answer.json();
    if (!answer.ok) throw new Error(`profile-streams: ${answer.status} ${body.error}`);
    return body;
  }

  const profiles = {
    page: () => send([record("page", { url: location.href, title: document.title })]),
    track: (name, properties = {}) => send([record("track", { name, properties })]),
  };
  window.profiles = profiles;

  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-track]");
    if (target) profiles.track(target.dataset.track).catch(console.error);
  });
  profiles.page().catch(console.error);
})();
