// The run page's live view: append each event the server streams (/runs/<id>/events) to the
// progress list, and reload at the run's end (the page then shows the history SQL recorded).
// Served as a file (the console's CSP allows no inline script); without it the page refreshes.
(function () {
  "use strict";
  var list = document.getElementById("live");
  if (!list || !window.EventSource) {
    return;
  }
  var source = new EventSource(list.getAttribute("data-events"));

  function show(message) {
    var event = JSON.parse(message.data);
    var item = document.createElement("li");
    item.className = event.kind + " " + event.status;
    item.setAttribute("data-id", message.lastEventId || "");
    item.textContent = event.line;
    if (event.output) {
      var output = document.createElement("pre");
      output.textContent = event.output;
      item.appendChild(output);
    }
    list.appendChild(item);
    return event;
  }

  ["batch", "step", "host"].forEach(function (kind) {
    source.addEventListener(kind, show);
  });
  source.addEventListener("end", function (message) {
    source.close();
    show(message);
    window.location.reload();
  });
})();
