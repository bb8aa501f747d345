// private-channels pages: progressive enhancements only; every page works without them.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // The filter box narrows the package tables as you type (the form filters on the server).
  var filter = document.getElementById("filter");
  if (filter) {
    filter.addEventListener("input", function () {
      var wanted = filter.value.toLowerCase();
      document.querySelectorAll("table.filterable tr[data-name]").forEach(function (row) {
        var name = row.getAttribute("data-name").toLowerCase();
        row.classList.toggle("hidden", name.indexOf(wanted) === -1);
      });
    });
  }
  // A copy button on every snippet, and on a new token.
  if (navigator.clipboard) {
    document.querySelectorAll(".snippet pre, .secret pre").forEach(function (pre) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = "Copy";
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(pre.textContent).then(function () {
          button.textContent = "Copied";
        });
      });
      pre.parentNode.insertBefore(button, pre);
    });
  }
});
