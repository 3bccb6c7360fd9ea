// Submit the form_post response to the client as soon as the page loads.
document.getElementById("form-post").submit();
